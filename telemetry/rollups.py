"""Stored rollups: 1-minute and 1-hour min, max, sum, count, first and last of each device's
numeric and boolean keys, kept by recomputing, never by adding up.

A flush marks the minutes it touched (mark_touched, in the flush's transaction); the bridge's
rollup job (telemetry.upkeep) then recomputes each marked minute from its raw rows and each
hour around it from its minute rows (roll_up_marked). Recomputing makes it idempotent: a
redelivered reading, stored once, gives the same rollup however often its minute is marked,
and a late reading only marks an old minute again. docs/storage.md explains the choice.
"""
from collections import defaultdict
from itertools import groupby
from operator import itemgetter

from django.db import connection, transaction

from telemetry import retention
from telemetry.bulk import insert_rows
from telemetry.models import HourRollup, MinuteRollup, Reading, RollupMark, ValueKind
from telemetry.retention import HOUR_MS, MINUTE_MS
ROLLED_KINDS = (ValueKind.NUMBER, ValueKind.BOOLEAN)
# Marks recomputed per transaction. The job shares the bridge's database thread with the
# flushes, so a flush waits for at most one batch: 500 held readings back 1-2 s at p95 (bench
# alarm_latency at 2,000 readings/s, docs/performance.md).
MARKS_PER_PASS = 50
# A minute is rolled up once it has ended this long ago, not while readings still arrive in it
# (flushes would mark it again and again), and again for each late reading.
SETTLE_MS = 5_000
# Marked buckets of one device this far apart are read in separate queries, so that one late
# reading does not make the job read every row between it and the present.
RUN_GAP_BUCKETS = 60
# pg_try_advisory_xact_lock's key: one rollup job at a time across bridges (on SQLite the
# IMMEDIATE transactions already serialise them).
JOB_LOCK = 0x7E1E_4B0B
ROLLUP_COLUMNS = ("device_id", "key", "start", "min", "max", "sum", "count", "first", "last")
# A mark as marks_to_write() gives it, and its columns' types on PostgreSQL.
MARK_COLUMNS = ("device_id", "key", "minute")
MARK_TYPES = ("text", "text", "bigint")


class RecentMarks:
    """The marks this process's committed flushes wrote for minutes that have not ended yet. A
    flush need not write those again: the rollup job leaves a minute's mark alone until SETTLE_MS
    after the minute ends, so clocks of the bridges' hosts must agree within SETTLE_MS. Forgotten
    as their minute ends, so this holds about a minute of active keys."""

    def __init__(self):
        self.minute = None
        self.marked = set()

    def unwritten(self, marks, now_ms):
        current = now_ms - now_ms % MINUTE_MS
        if current != self.minute:
            self.minute = current
            self.marked = {mark for mark in self.marked if mark[2] >= current}
        return [mark for mark in marks if mark not in self.marked]

    def written(self, marks):
        self.marked.update(mark for mark in marks if self.minute is not None and mark[2] >= self.minute)


recent_marks = RecentMarks()


def mark_touched(rows, now_ms=None):
    """Marks the minutes of stored rows (device, key, ts, kind, ...) for the rollup job. Given the
    time, skips those this process marked already in the current minute (RecentMarks)."""
    marks = marks_to_write(rows, now_ms)
    if now_ms is not None:
        remember_marks(marks)
    insert_rows(mark_sql(), [(*mark, 1) for mark in marks], (*MARK_TYPES, "bigint"))


def marks_to_write(rows, now_ms=None):
    """The sorted marks (device, key, minute) of rows (device, key, ts, kind, ...) of rolled kinds;
    given the time, without those this process wrote already in the current minute."""
    touched = {(device, key, ts - ts % MINUTE_MS) for device, key, ts, kind, *_ in rows if kind in ROLLED_KINDS}
    return sorted(touched if now_ms is None else recent_marks.unwritten(touched, now_ms))


def remember_marks(marks):
    """Lets later flushes skip these marks once the transaction writing them commits."""
    transaction.on_commit(lambda: recent_marks.written(marks))


def mark_sql():
    """The INSERT of marks whose `{rows}` stands for rows (device, key, minute, generation): a
    minute marked already gets a new generation, so a job computing it meanwhile keeps the mark."""
    quote = connection.ops.quote_name
    table = quote(RollupMark._meta.db_table)
    device, key, minute, generation = map(quote, ("device_id", "key", "minute", "generation"))
    return (
        f"INSERT INTO {table} ({device}, {key}, {minute}, {generation}) {{rows}} "
        f"ON CONFLICT ({device}, {key}, {minute}) DO UPDATE SET {generation} = {table}.{generation} + 1"
    )


def roll_up_marked(now_ms, limit):
    """Recomputes up to `limit` marked minutes that ended SETTLE_MS before `now_ms`, oldest first,
    and their hours; returns (minutes recomputed, marks dropped). A mark older than its device's raw retention (a very late
    reading) is dropped: its minute's other raw rows are gone, so recomputing would lose them.
    Returns (0, 0) while another bridge's job runs."""
    with transaction.atomic():
        if not _only_job():
            return 0, 0
        settled = RollupMark.objects.filter(minute__lte=now_ms - MINUTE_MS - SETTLE_MS).order_by("minute")
        marks = list(settled.values_list("device_id", "key", "minute", "generation")[:limit])
        if not marks:
            return 0, 0
        limits = retention.cutoffs_by_device({device for device, *_ in marks}, now_ms)
        minutes = {(device, key, minute) for device, key, minute, _ in marks if limits[device].rollable(minute)}
        _recompute(MinuteRollup, minutes, MINUTE_MS, _raw_parts)
        _recompute(HourRollup, {(device, key, minute - minute % HOUR_MS) for device, key, minute in minutes},
                   HOUR_MS, _minute_parts)
        _unmark(marks)
    return len(minutes), len(marks) - len(minutes)


def marked_count():
    """Minutes waiting for the rollup job."""
    return RollupMark.objects.count()


def mark_all_readings(after, chunk):
    """Marks the minutes of the next `chunk` stored readings after the (device, key, ts) `after`
    (None: from the first), for the rollup job to compute (the rollupbackfill command); returns
    (the (device, key, ts) of the last reading marked, how many readings), or (None, 0) when
    none is left."""
    readings = Reading.objects.order_by("pk")
    if after is not None:
        readings = readings.filter(pk__gt=after)
    rows = list(readings.values_list("device_id", "key", "ts", "kind")[:chunk])
    if not rows:
        return None, 0
    with transaction.atomic():
        mark_touched(rows)
    return rows[-1][:3], len(rows)


def _only_job():
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [JOB_LOCK])
        return cursor.fetchone()[0]


def _recompute(model, buckets, width, read_parts):
    """Sets each bucket (device, key, start) of `model` to the sum of its parts from
    `read_parts`, or deletes it when it has none. A device's keys are read together, a run of
    buckets at a time: on SQLite its rows are ordered by time before key (docs/storage.md)."""
    computed = []
    empty = []
    by_device = defaultdict(lambda: defaultdict(set))
    for device, key, start in buckets:
        by_device[device][key].add(start)
    for device, starts_by_key in by_device.items():
        for run in _runs(sorted(set().union(*starts_by_key.values())), width):
            in_run = set(run)
            wanted_by_key = {key: wanted for key, starts in starts_by_key.items() if (wanted := starts & in_run)}
            parts = read_parts(device, sorted(wanted_by_key), run[0], run[-1] + width)
            parts_by_key = {key: [part[1:] for part in key_parts] for key, key_parts in groupby(parts, key=itemgetter(0))}
            for key, wanted in sorted(wanted_by_key.items()):
                found = _combine(parts_by_key.get(key, ()), width, wanted)
                computed.extend((device, key, start, *found[start]) for start in sorted(found))
                empty.extend((device, key, start) for start in sorted(wanted - set(found)))
    _upsert(model, computed)
    for (device, key), rows in groupby(empty, key=lambda row: row[:2]):
        model.objects.filter(device_id=device, key=key, start__in=[row[2] for row in rows]).delete()


def _runs(starts, width):
    """Sorted starts split where two are more than RUN_GAP_BUCKETS apart."""
    run = [starts[0]]
    for start in starts[1:]:
        if start - run[-1] > RUN_GAP_BUCKETS * width:
            yield run
            run = []
        run.append(start)
    yield run


def _combine(parts, width, wanted):
    """{bucket start: [min, max, sum, count, first, last]} of time-ordered parts (ts, min, max,
    sum, count, first, last) that fall in the wanted buckets."""
    found = {}
    for ts, low, high, total, count, first, last in parts:
        start = ts - ts % width
        if start not in wanted:
            continue
        bucket = found.get(start)
        if bucket is None:
            found[start] = [low, high, total, count, first, last]
        else:
            bucket[0] = min(bucket[0], low)
            bucket[1] = max(bucket[1], high)
            bucket[2] += total
            bucket[3] += count
            bucket[5] = last
    return found


def _raw_parts(device, keys, start, end):
    """The minutes of some keys' raw rows of a device, (key, minute start, min, max, sum, count,
    first, last) in key and time order, summed up by the database: a minute can hold thousands
    of readings, and reading each into Python cost the bridge's database thread a fifth of its
    time at 14,000 readings/s. First and last are the values at the minute's first and last ts,
    found by the primary key."""
    with connection.cursor() as cursor:
        cursor.execute(_raw_parts_sql(len(keys)), [MINUTE_MS, device, *keys, start, end, *ROLLED_KINDS, device, device])
        return cursor.fetchall()


def _raw_parts_sql(key_count):
    quote = connection.ops.quote_name
    table = quote(Reading._meta.db_table)
    device, key, ts, kind, num = map(quote, ("device_id", "key", "ts", "kind", "num"))
    keys = ", ".join(["%s"] * key_count)
    kinds = ", ".join(["%s"] * len(ROLLED_KINDS))
    return (
        f"SELECT minutes.{key}, minutes.start, minutes.low, minutes.high, minutes.total, minutes.count, "
        f"first.{num}, last.{num} "
        f"FROM (SELECT {key}, {ts} - {ts} %% %s AS start, min({num}) AS low, max({num}) AS high, "
        f"sum({num}) AS total, count(*) AS count, min({ts}) AS first_ts, max({ts}) AS last_ts FROM {table} "
        f"WHERE {device} = %s AND {key} IN ({keys}) AND {ts} >= %s AND {ts} < %s AND {kind} IN ({kinds}) "
        f"GROUP BY 1, 2) AS minutes "
        f"JOIN {table} AS first ON first.{device} = %s AND first.{key} = minutes.{key} AND first.{ts} = minutes.first_ts "
        f"JOIN {table} AS last ON last.{device} = %s AND last.{key} = minutes.{key} AND last.{ts} = minutes.last_ts "
        f"ORDER BY 1, 2"
    )


def _minute_parts(device, keys, start, end):
    """Some keys' minute rollups of a device in [start, end), (key, start, min, max, sum, count,
    first, last) in key and time order. Plain SQL: the ORM's building of the query cost more
    than the query (it runs for every minute the job computes)."""
    quote = connection.ops.quote_name
    device_column, key_column, start_column = map(quote, ROLLUP_COLUMNS[:3])
    sql = (
        f"SELECT {', '.join(map(quote, ROLLUP_COLUMNS[1:]))} FROM {quote(MinuteRollup._meta.db_table)} "
        f"WHERE {device_column} = %s AND {key_column} IN ({', '.join(['%s'] * len(keys))}) "
        f"AND {start_column} >= %s AND {start_column} < %s ORDER BY 1, 2"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [device, *keys, start, end])
        return cursor.fetchall()


def _upsert(model, rows):
    if not rows:
        return
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    columns = [quote(name) for name in ROLLUP_COLUMNS]
    updates = ", ".join(f"{column} = excluded.{column}" for column in columns[3:])
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))}) "
        f"ON CONFLICT ({', '.join(columns[:3])}) DO UPDATE SET {updates}"
    )
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def _unmark(marks):
    """Removes the marks taken, each unless a flush marked its minute again since."""
    quote = connection.ops.quote_name
    device, key, minute, generation = map(quote, ("device_id", "key", "minute", "generation"))
    sql = (
        f"DELETE FROM {quote(RollupMark._meta.db_table)} "
        f"WHERE {device} = %s AND {key} = %s AND {minute} = %s AND {generation} = %s"
    )
    with connection.cursor() as cursor:
        cursor.executemany(sql, marks)
