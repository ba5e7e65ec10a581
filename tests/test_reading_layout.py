"""Migration telemetry 0003 from the id-keyed readings table to the keyed layout, on a database
holding readings: a small history moves at once, a big one is left in telemetry_reading_legacy
for `manage.py move_legacy_readings`, newest first (telemetry.layout). Then 0004, which clusters
SQLite's table by (device, ts, key), and back."""
import importlib
import io

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from telemetry import history, layout, partitions
from telemetry.models import Reading

pytestmark = pytest.mark.postgres

DAY = 86_400_000
T0 = 1_764_000_000_000  # 2025-11-24 16:00 UTC
MIGRATION = importlib.import_module("telemetry.migrations.0003_reading_layout")


def migrate(targets=None):
    executor = MigrationExecutor(connection)
    executor.migrate(targets or executor.loader.graph.leaf_nodes())


def migrated_back_to(migration):
    """The database as telemetry's `migration` left it; migrated to the newest again afterwards."""
    migrate([("telemetry", migration)])
    yield
    migrate()
    partitions.drop_partitions_before(T0 + 30 * DAY)


@pytest.fixture
def old_layout(transactional_db):
    yield from migrated_back_to("0002_rollups")


@pytest.fixture
def sensor(make_device, make_user):
    return make_device("sensor-1", make_user("owner"))


def store_the_old_way(device_id, timestamps):
    """Rows of the old table, ids rising with ts, values 0, 1, 2..."""
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO telemetry_reading (device_id, key, ts, kind, num, text) VALUES (%s, 'temp', %s, 'n', %s, NULL)",
            [(device_id, ts, float(n)) for n, ts in enumerate(timestamps)],
        )


def points(device, start, end):
    return history.raw_series(device, ["temp"], start, end, 100)[0].points


TIMES = [T0 + day * DAY + n for day in range(3) for n in range(3)]


def test_a_small_history_is_moved_by_the_migration(old_layout, sensor):
    store_the_old_way(sensor.pk, TIMES)
    migrate()
    assert not layout.legacy_exists()
    assert points(sensor, T0, T0 + 3 * DAY) == [[ts, float(n)] for n, ts in enumerate(TIMES)]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT DISTINCT tableoid::regclass::text FROM telemetry_reading ORDER BY 1")
            assert [name for (name,) in cursor.fetchall()] == [partitions.partition_name(T0 + day * DAY) for day in range(3)]
    else:
        with connection.cursor() as cursor:
            cursor.execute("SELECT sql FROM sqlite_master WHERE name = 'telemetry_reading'")
            assert cursor.fetchone()[0].endswith("WITHOUT ROWID")


def test_a_big_history_is_left_to_the_mover_which_moves_the_newest_first(old_layout, sensor, monkeypatch):
    monkeypatch.setattr(MIGRATION, "INLINE_ROWS", len(TIMES) - 1)
    store_the_old_way(sensor.pk, TIMES)
    migrate()
    assert layout.legacy_exists() and not Reading.objects.exists()
    assert layout.move_chunk(2) == 2
    assert points(sensor, T0, T0 + 3 * DAY) == [[ts, float(n)] for n, ts in enumerate(TIMES)][-2:]
    out = io.StringIO()
    call_command("move_legacy_readings", "--chunk", "3", stdout=out)
    assert "moved 3 readings\nmoved 6 readings\n" in out.getvalue() and "done: 7 readings moved" in out.getvalue()
    assert not layout.legacy_exists()
    assert points(sensor, T0, T0 + 3 * DAY) == [[ts, float(n)] for n, ts in enumerate(TIMES)]
    call_command("move_legacy_readings", stdout=out)
    assert "nothing to move" in out.getvalue()


def primary_key_columns():
    """The readings table's primary key columns, in their order."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT a.attname FROM pg_index i CROSS JOIN unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) "
                "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
                "WHERE i.indrelid = 'telemetry_reading'::regclass AND i.indisprimary ORDER BY k.n"
            )
            return [name for (name,) in cursor.fetchall()]
        cursor.execute("SELECT name, pk FROM pragma_table_info('telemetry_reading') WHERE pk > 0 ORDER BY pk")
        return [name for name, _ in cursor.fetchall()]


@pytest.fixture
def keyed_layout(transactional_db):
    yield from migrated_back_to("0003_reading_layout")


def test_sqlite_readings_are_clustered_by_time_within_a_device_keeping_every_row(keyed_layout, sensor, make_device):
    other = make_device("sensor-2", sensor.owner)
    store = "INSERT INTO telemetry_reading (device_id, key, ts, kind, num, text) VALUES (%s, %s, %s, 'n', %s, NULL)"
    with connection.cursor() as cursor:
        cursor.executemany(store, [(device.pk, key, ts, float(n)) for device in (sensor, other)
                                   for key in ("temp", "rh") for n, ts in enumerate(TIMES)])
    assert primary_key_columns() == ["device_id", "key", "ts"]
    migrate()
    by_time = ["device_id", "ts", "key"] if connection.vendor == "sqlite" else ["device_id", "key", "ts"]
    assert primary_key_columns() == by_time
    for device in (sensor, other):
        series = history.raw_series(device, ["temp", "rh"], T0, T0 + 3 * DAY, 100)
        assert [one.points for one in series] == [[[ts, float(n)] for n, ts in enumerate(TIMES)]] * 2
    migrate([("telemetry", "0003_reading_layout")])
    assert primary_key_columns() == ["device_id", "key", "ts"]
    assert Reading.objects.count() == 2 * 2 * len(TIMES)
