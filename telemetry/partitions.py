"""The day partitions of the readings table on PostgreSQL: one per UTC day of `ts`, named
telemetry_reading_pYYYYMMDD, beside a DEFAULT partition that takes any reading no day
partition covers, so an insert never fails for want of one. The bridge's upkeep creates the
next AHEAD_DAYS days' partitions and retention drops whole expired days. On SQLite (one
table, no partitions) both functions do nothing."""
from datetime import datetime, timezone

from django.db import connection, transaction

from telemetry.models import Reading

DAY_MS = 86_400_000
AHEAD_DAYS = 3
PREFIX = f"{Reading._meta.db_table}_p"
DEFAULT = f"{Reading._meta.db_table}_default"
# pg_advisory_xact_lock's key: bridges starting together create the same partitions.
LOCK = 0x7E1E_9A27


def ensure_partitions(start_ms, end_ms):
    """Creates the day partitions covering [start_ms, end_ms) that do not exist yet; returns their names.

    A day's rows that reached the DEFAULT partition before its own partition existed (PostgreSQL
    refuses to attach a partition whose rows the DEFAULT holds) are moved into the new one, in
    the transaction that creates it."""
    if connection.vendor != "postgresql" or end_ms <= start_ms:
        return []
    created = []
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK])
        existing = set(day_partitions(cursor))
        for day in range(start_ms // DAY_MS, (end_ms - 1) // DAY_MS + 1):
            name = partition_name(day * DAY_MS)
            if name not in existing:
                _create(cursor, name, day * DAY_MS)
                created.append(name)
    return created


def ensure_ahead(now_ms):
    """Creates the partitions of the day of `now_ms` and of the AHEAD_DAYS days after it."""
    today = now_ms // DAY_MS
    return ensure_partitions(today * DAY_MS, (today + AHEAD_DAYS + 1) * DAY_MS)


def drop_partitions_before(cutoff_ms):
    """Drops the day partitions wholly before `cutoff_ms`; returns about how many rows they held."""
    if connection.vendor != "postgresql":
        return 0
    dropped = 0
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK])
        for name, start in day_partitions(cursor).items():
            if start + DAY_MS <= cutoff_ms:
                dropped += _rows(cursor, name)
                cursor.execute(f"DROP TABLE {name}")
    return dropped


def _rows(cursor, name):
    """A partition's rows as the planner's statistics estimate them: counting a day's rows would
    read the whole day just before dropping it. PostgreSQL analyses a table as it grows, so only
    a partition never analysed (a few rows) is counted."""
    cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [name])
    estimate = cursor.fetchone()[0]
    if estimate >= 0:
        return estimate
    cursor.execute(f"SELECT count(*) FROM {name}")
    return cursor.fetchone()[0]


def partition_name(ts_ms):
    """The name of the day partition holding `ts_ms`."""
    return PREFIX + datetime.fromtimestamp(ts_ms // 1000, timezone.utc).strftime("%Y%m%d")


def day_partitions(cursor):
    """{name: start of its day in epoch ms} of the readings table's day partitions, oldest first."""
    cursor.execute(
        "SELECT child.relname FROM pg_inherits JOIN pg_class child ON child.oid = pg_inherits.inhrelid "
        "WHERE pg_inherits.inhparent = %s::regclass AND child.relname LIKE %s ORDER BY child.relname",
        [Reading._meta.db_table, PREFIX + "%"],
    )
    found = {}
    for (name,) in cursor.fetchall():
        day = datetime.strptime(name[len(PREFIX):], "%Y%m%d").replace(tzinfo=timezone.utc)
        found[name] = int(day.timestamp()) * 1000
    return found


def _create(cursor, name, start):
    """Creates a day partition detached, moves into it the DEFAULT's rows of its day, and attaches
    it: ATTACH locks the table less than CREATE TABLE … PARTITION OF (SHARE UPDATE EXCLUSIVE
    rather than ACCESS EXCLUSIVE), so flushes into other days go on meanwhile."""
    table = Reading._meta.db_table
    cursor.execute(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    cursor.execute(
        f"WITH moved AS (DELETE FROM {DEFAULT} WHERE ts >= %s AND ts < %s RETURNING *) INSERT INTO {name} SELECT * FROM moved",
        [start, start + DAY_MS],
    )
    cursor.execute(f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM ({start}) TO ({start + DAY_MS})")
