"""The readings table's day partitions (telemetry.partitions) on PostgreSQL: created ahead by the
bridge's upkeep, a DEFAULT for anything outside them, whole days dropped by retention. On SQLite
the same calls do nothing and retention deletes the same rows by key ranges."""
import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.utils import timezone

from bridge.protocol import Sample
from telemetry import history, partitions, retention
from telemetry.models import Reading, RollupMark
from telemetry.storage import store_samples
from telemetry.upkeep import Upkeep

pytestmark = pytest.mark.postgres

DAY = 86_400_000
HOUR = 3_600_000
D0 = 1_893_456_000_000  # 2030-01-01 00:00 UTC: no test creates partitions there but these
on_postgres = pytest.mark.skipif("connection.vendor != 'postgresql'")


@pytest.fixture
def sensor(make_user, make_device):
    return make_device("sensor-1", make_user("owner"))


@pytest.fixture(autouse=True)
def no_partitions_left(transactional_db):
    """Partitions outlive the rows the test database empties between tests: drop this file's."""
    yield
    partitions.drop_partitions_before(D0 + 400 * DAY)


def store(device_id, *timestamps, key="temp"):
    store_samples({device_id: [Sample(ts, {key: float(n)}) for n, ts in enumerate(timestamps)]}, timezone.now())


def partition_of(device_id, ts):
    """The name of the table (partition) that holds a reading."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT tableoid::regclass::text FROM {Reading._meta.db_table} WHERE device_id = %s AND ts = %s",
                       [device_id, ts])
        return cursor.fetchone()[0]


def existing():
    with connection.cursor() as cursor:
        return set(partitions.day_partitions(cursor))


def expire(now_ms):
    upkeep = Upkeep(clock=lambda: now_ms)
    async_to_sync(upkeep.retention_pass)()
    return upkeep.counts


@on_postgres
def test_the_upkeep_creates_today_and_the_next_days_partitions_ahead(sensor):
    expire(D0 + 5 * HOUR)
    names = {partitions.partition_name(D0 + day * DAY) for day in range(partitions.AHEAD_DAYS + 1)}
    assert names == {"telemetry_reading_p20300101", "telemetry_reading_p20300102",
                     "telemetry_reading_p20300103", "telemetry_reading_p20300104"}
    assert names <= existing() and partitions.partition_name(D0 + 4 * DAY) not in existing()
    with connection.cursor() as cursor:
        cursor.execute("SELECT c.relispartition, pg_get_expr(c.relpartbound, c.oid) FROM pg_class c WHERE c.relname = %s",
                       ["telemetry_reading_p20300102"])
        assert cursor.fetchone() == (True, f"FOR VALUES FROM ('{D0 + DAY}') TO ('{D0 + 2 * DAY}')")
    store(sensor.pk, D0 + DAY + 1)
    assert partition_of(sensor.pk, D0 + DAY + 1) == "telemetry_reading_p20300102"
    assert expire(D0 + 6 * HOUR) is not None and partitions.ensure_ahead(D0) == []  # idempotent


@on_postgres
def test_a_reading_outside_every_partition_lands_in_default_is_readable_and_moves_to_its_day(sensor):
    far = D0 + 300 * DAY + 7
    store(sensor.pk, far, far + 1)
    store(sensor.pk, far)  # again: stored once
    assert partition_of(sensor.pk, far) == partitions.DEFAULT
    assert history.raw_series(sensor, ["temp"], far, far + 2, 10)[0].points == [[far, 0.0], [far + 1, 1.0]]
    assert partitions.ensure_partitions(far, far + 1) == [partitions.partition_name(far)]
    assert partition_of(sensor.pk, far) == partition_of(sensor.pk, far + 1) == partitions.partition_name(far)
    assert history.raw_series(sensor, ["temp"], far, far + 2, 10)[0].points == [[far, 0.0], [far + 1, 1.0]]
    store(sensor.pk, far + 2)
    assert Reading.objects.filter(device=sensor).count() == 3


@on_postgres
def test_drop_partitions_before_drops_exactly_the_whole_days_before_the_cutoff(sensor):
    partitions.ensure_partitions(D0, D0 + 4 * DAY)
    times = [D0, D0 + DAY - 1, D0 + DAY, D0 + 2 * DAY - 1, D0 + 2 * DAY, D0 + 3 * DAY + 5]
    store(sensor.pk, *times)
    store(sensor.pk, D0 + 2, key="door")
    assert partitions.drop_partitions_before(D0 + 2 * DAY + HOUR) == 5
    assert sorted(Reading.objects.values_list("ts", flat=True)) == [D0 + 2 * DAY, D0 + 3 * DAY + 5]
    days = existing()
    assert partitions.partition_name(D0) not in days and partitions.partition_name(D0 + DAY) not in days
    assert {partitions.partition_name(D0 + 2 * DAY), partitions.partition_name(D0 + 3 * DAY)} <= days
    assert partitions.drop_partitions_before(D0 + 2 * DAY + HOUR) == 0


def test_partition_calls_do_nothing_on_sqlite(sensor):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only")
    assert partitions.ensure_ahead(D0) == [] and partitions.drop_partitions_before(D0 + DAY) == 0


def test_retention_drops_days_only_before_the_longest_device_retention_and_deletes_the_rest(
    settings, sensor, make_device
):
    """Hub 2 days of raw rows, one device 4: days older than 4 days go whole (on PostgreSQL),
    the rest expired by batches; each device keeps exactly its own."""
    longer = make_device("sensor-2", sensor.owner, retain_raw_days=4)
    settings.RETAIN_RAW_DAYS, settings.RETAIN_MINUTE_DAYS, settings.RETAIN_HOUR_DAYS = 2, 0, 0
    now = D0 + 8 * DAY + 5 * HOUR
    partitions.ensure_partitions(D0, now)
    times = [D0 + day * DAY + hour * HOUR for day in range(9) for hour in (0, 4, 6, 20)]
    for device in (sensor, longer):
        store(device.pk, *times)
    RollupMark.objects.all().delete()  # as if rolled up: the oldest mark would hold raw rows back
    counts = expire(now)
    for device, days in ((sensor, 2), (longer, 4)):
        kept = sorted(Reading.objects.filter(device=device).values_list("ts", flat=True))
        assert kept == [ts for ts in times if ts >= now - days * DAY], device.pk
    assert counts["expired_raw"] == len([ts for ts in times if ts < now - 2 * DAY]) + len(
        [ts for ts in times if ts < now - 4 * DAY])
    if connection.vendor == "postgresql":
        days = existing()
        floor = now - 4 * DAY
        assert all(partitions.partition_name(day) not in days for day in range(D0, floor - DAY + 1, DAY))
        assert partitions.partition_name(floor) in days  # its day is partly kept
    assert retention.raw_floor(now) == now - 4 * DAY
    assert sum(expire(now).values()) == 0
