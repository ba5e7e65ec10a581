"""Stored rollups: 1-minute and 1-hour min, max, sum, count, first and last of each device's
numeric and boolean keys, kept by recomputing, never by adding up.

A flush marks the minutes it touched (mark_touched, in the flush's transaction); the bridge's
rollup job (telemetry.upkeep) then recomputes each marked minute from its raw rows and each
hour around it from its minute rows (roll_up_marked). Recomputing makes it idempotent: a
redelivered reading, stored once, gives the same rollup however often its minute is marked,
and a late reading only marks an old minute again. docs/storage.md explains the choice.
"""
from itertools import groupby

from django.db import connection, transaction

from telemetry import retention
from telemetry.bulk import insert_rows, rows_sql
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
        _recompute(MinuteRollup, minutes, MINUTE_MS, Reading)
        _recompute(HourRollup, {(device, key, minute - minute % HOUR_MS) for device, key, minute in minutes},
                   HOUR_MS, MinuteRollup)
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


def _recompute(model, buckets, width, parts_model):
    """Sets each bucket (device, key, start) of `model`, `width` long, to the sum of its parts in
    `parts_model` (Reading or MinuteRollup), or deletes it when it has none. One statement for
    all of them: the database adds up the parts, finds the first and the last, and upserts. On
    PostgreSQL each statement is a round trip, and a query per device held the job to 600
    minutes a second (docs/performance.md, "The rollup job in SQL")."""
    if not buckets:
        return
    wanted, params = rows_sql(sorted(buckets), MARK_TYPES)
    if parts_model is Reading:
        params += ROLLED_KINDS
    with connection.cursor() as cursor:
        cursor.execute(_recompute_sql(model, width, wanted, parts_model), params)
        found = set(cursor.fetchall())
    empty = sorted(set(buckets) - found)
    for (device, key), rows in groupby(empty, key=lambda row: row[:2]):
        model.objects.filter(device_id=device, key=key, start__in=[row[2] for row in rows]).delete()


def _recompute_sql(model, width, wanted, parts_model):
    """The upsert of _recompute(), returning the buckets that have parts. A raw part is one
    reading of a rolled kind (ROLLED_KINDS, the parameters after the wanted buckets'); a minute
    part holds its own totals, first and last."""
    quote = connection.ops.quote_name
    device, key, start, low, high, total, count, first, last = map(quote, ROLLUP_COLUMNS)
    if parts_model is Reading:
        at, num = quote("ts"), quote("num")
        totals = f"min(p.{num}) AS low, max(p.{num}) AS high, sum(p.{num}) AS total, count(*) AS n"
        kinds = ", ".join(["%s"] * len(ROLLED_KINDS))
        rolled, first_value, last_value = f" AND p.{quote('kind')} IN ({kinds})", num, num
    else:
        at = start
        totals = f"min(p.{low}) AS low, max(p.{high}) AS high, sum(p.{total}) AS total, sum(p.{count}) AS n"
        rolled, first_value, last_value = "", first, last
    parts, target = quote(parts_model._meta.db_table), quote(model._meta.db_table)

    def part_at(moment, value):
        # The one part of the bucket's series at that moment, by its whole key. A subquery, not a
        # join: PostgreSQL's planner joined the last one on device and key alone and filtered every
        # day partition's rows of the series by time (performance.md, "The rollup job on a filled
        # database").
        return (f"SELECT o.{value} FROM {parts} AS o WHERE o.{device} = t.{device} AND o.{key} = t.{key} "
                f"AND o.{at} = t.{moment}")

    updates = ", ".join(f"{column} = excluded.{column}" for column in (low, high, total, count, first, last))
    return (
        f"WITH wanted ({device}, {key}, {start}) AS ({wanted}), "
        f"totals AS (SELECT w.{device}, w.{key}, w.{start}, {totals}, min(p.{at}) AS first_at, max(p.{at}) AS last_at "
        f"FROM wanted AS w JOIN {parts} AS p ON p.{device} = w.{device} AND p.{key} = w.{key} "
        f"AND p.{at} >= w.{start} AND p.{at} < w.{start} + {int(width)}{rolled} "
        f"GROUP BY w.{device}, w.{key}, w.{start}) "
        f"INSERT INTO {target} ({device}, {key}, {start}, {low}, {high}, {total}, {count}, {first}, {last}) "
        f"SELECT t.{device}, t.{key}, t.{start}, t.low, t.high, t.total, t.n, "
        f"({part_at('first_at', first_value)}), ({part_at('last_at', last_value)}) "
        # WHERE true: else SQLite's parser reads ON CONFLICT as a join's ON.
        f"FROM totals AS t WHERE true ON CONFLICT ({device}, {key}, {start}) DO UPDATE SET {updates} "
        f"RETURNING {device}, {key}, {start}"
    )


def _unmark(marks):
    """Removes the marks taken, each unless a flush marked its minute again since."""
    if not marks:
        return
    quote = connection.ops.quote_name
    columns = ", ".join(map(quote, (*MARK_COLUMNS, "generation")))
    taken, params = rows_sql(marks, (*MARK_TYPES, "bigint"))
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {quote(RollupMark._meta.db_table)} WHERE ({columns}) IN ({taken})", params)
