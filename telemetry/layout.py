"""Moving readings stored before the keyed layout (telemetry/migrations/0003_reading_layout.py)
into it. The migration renames the old table to telemetry_reading_legacy and moves a small one
at once; a big one is moved by `manage.py move_legacy_readings` while the hub runs, a chunk
per transaction, newest first, so recent history is back first. Until a row is moved, history,
rollups and retention do not see it (docs/storage.md)."""
import time

from django.db import connection, transaction

from telemetry import partitions
from telemetry.models import Reading

LEGACY = f"{Reading._meta.db_table}_legacy"
COLUMNS = "device_id, key, ts, kind, num, text"
CHUNK = 20_000


def legacy_exists():
    return LEGACY in connection.introspection.table_names()


def legacy_holds_more_than(count):
    """Whether the legacy table holds more than `count` rows, without counting them all."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM (SELECT 1 FROM {LEGACY} LIMIT %s) AS head", [count + 1])
        return cursor.fetchone()[0] > count


def move_chunk(limit=CHUNK):
    """Moves the `limit` newest (by id) legacy rows in one transaction, creating the day
    partitions they need up to the upkeep's horizon (anything later goes to DEFAULT); returns
    how many rows left the legacy table. A row stored already (the same device, key and ts)
    is kept as it is. Drops the legacy table once it is empty."""
    table = connection.ops.quote_name(Reading._meta.db_table)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SELECT min(id) FROM (SELECT id FROM {LEGACY} ORDER BY id DESC LIMIT %s) AS chunk", [limit])
        lowest = cursor.fetchone()[0]
        if lowest is None:
            cursor.execute(f"DROP TABLE {LEGACY}")
            return 0
        if connection.vendor == "postgresql":
            cursor.execute(f"SELECT DISTINCT ts / %s FROM {LEGACY} WHERE id >= %s", [partitions.DAY_MS, lowest])
            horizon = int(time.time() * 1000) // partitions.DAY_MS + partitions.AHEAD_DAYS
            for (day,) in cursor.fetchall():
                if day <= horizon:
                    partitions.ensure_partitions(day * partitions.DAY_MS, (day + 1) * partitions.DAY_MS)
        cursor.execute(
            f"INSERT INTO {table} ({COLUMNS}) SELECT {COLUMNS} FROM {LEGACY} WHERE id >= %s ON CONFLICT DO NOTHING",
            [lowest],
        )
        cursor.execute(f"DELETE FROM {LEGACY} WHERE id >= %s", [lowest])
        return cursor.rowcount


def move_all(limit=CHUNK, progress=None):
    """Moves every legacy row, a chunk per transaction, calling `progress(moved so far)` after
    each; returns how many moved. Safe to stop and run again."""
    moved = 0
    while legacy_exists():
        count = move_chunk(limit)
        moved += count
        if progress and count:
            progress(moved)
    return moved
