"""Fills the hub's database with history, fast, as if its devices had reported for days: raw
readings through the database's bulk path (PostgreSQL COPY, SQLite executemany in large
transactions, rows sorted as the unique index orders them), and what the hub keeps beside
them: each key's latest value, and the 1-minute and 1-hour rollups (telemetry.rollups),
computed in the database from the rows just written.

Run by bench.growth in the hub's environment, on devices bench.prepare registered:
python -m bench.fill --devices 1000 --values 50000000 --days 90 --end EPOCH_MS
Logs its progress on stderr; prints {"values": N, "seconds": s, ...} as JSON."""
import argparse
import json
import math
import os
import sqlite3
import sys
import time
from contextlib import closing

import django
import psycopg

from bench.prepare import device_ids

# Keys the load generators never send (they send temp, hum and pub), so that filled rows
# cannot collide with readings an earlier scenario stored in the same range.
KEYS = ("current", "flow", "level", "power", "voltage")
DAY_MS = 86_400_000
# Readings written per transaction (and per COPY): progress is logged after each.
CHUNK_VALUES = 1_000_000
# The rollups' figures from the rows of each interval, first and last by time: a window
# function gives every row of an interval the same first and last, which min() then picks.
ROLLUP_SQL = """
INSERT INTO {target} (device_id, key, "start", "min", "max", "sum", "count", "first", "last")
SELECT device_id, key, bucket, {low}, {high}, {total}, {count}, min(opening), min(closing) FROM (
    SELECT device_id, key, {time} - {time} %% {width} AS bucket, {columns},
           first_value({first}) OVER w AS opening, last_value({last}) OVER w AS closing
    FROM {source}
    WHERE device_id IN ({devices}) AND key IN ({keys}) {only_numbers}
    WINDOW w AS (PARTITION BY device_id, key, {time} - {time} %% {width} ORDER BY {time}
                 ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
) AS parts
GROUP BY device_id, key, bucket
"""
MINUTE_ROLLUP = dict(
    target="telemetry_minuterollup", source="telemetry_reading", time="ts", width=60_000, columns="num",
    first="num", last="num", low="min(num)", high="max(num)", total="sum(num)", count="count(*)",
    only_numbers="AND kind IN ('n', 'b')",
)
HOUR_ROLLUP = dict(
    target="telemetry_hourrollup", source="telemetry_minuterollup", time='"start"', width=3_600_000,
    columns='"min", "max", "sum", "count", "first", "last"', first='"first"', last='"last"',
    low='min("min")', high='max("max")', total='sum("sum")', count='sum("count")', only_numbers="",
)


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] fill: {message}", file=sys.stderr, flush=True)


def series_values(values, series):
    """How many values each of `series` series holds: `values` shared out, the first ones one more."""
    share, extra = divmod(values, series)
    return [share + (number < extra) for number in range(series)]


def series_rows(device, key, number, count, start_ms, end_ms, latest):
    """`count` readings of one key, evenly spaced over [start_ms, end_ms), each series offset a
    little so that devices do not all report at the same instant: a daily wave with some noise.
    Records the last one in `latest`; none for a count of 0 (fewer values than series)."""
    if not count:
        return
    step = (end_ms - start_ms) / count
    offset = (number * 7919) % max(1, int(step))
    base = 10 + number % 90
    ts = num = None
    for index in range(count):
        ts = start_ms + int(index * step) + offset
        num = round(base + 5 * math.sin(ts / DAY_MS * 2 * math.pi) + (index * 37 % 11) / 10, 2)
        yield device, key, ts, "n", num
    if ts is not None:
        latest.append((device, key, ts, "n", num, None))


def write_readings(cursor, vendor, rows):
    if vendor == "postgresql":
        with cursor.copy("COPY telemetry_reading (device_id, key, ts, kind, num) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    else:
        # In the order of SQLite's primary key (device_id, ts, key): appended, not split in.
        rows = sorted(rows, key=lambda row: (row[0], row[2], row[1]))
        cursor.executemany("INSERT INTO telemetry_reading (device_id, key, ts, kind, num) VALUES (%s, %s, %s, %s, %s)", rows)


def roll_up(cursor, devices):
    """The minute rollups of the devices' filled keys from their raw rows, then the hours from the minutes."""
    placeholders = {"devices": ", ".join(["%s"] * len(devices)), "keys": ", ".join(["%s"] * len(KEYS))}
    for rollup in (MINUTE_ROLLUP, HOUR_ROLLUP):
        cursor.execute(ROLLUP_SQL.format(**rollup, **placeholders), [*devices, *KEYS])


def fill(devices, values, days, end_ms):
    """Writes `values` readings of KEYS over `days` days before `end_ms`, device after device,
    each group of devices in a transaction with its rollups; returns the figures."""
    from django.db import connection, transaction

    from telemetry.partitions import ensure_partitions

    start_ms = end_ms - days * DAY_MS
    ensure_partitions(start_ms, end_ms)  # PostgreSQL's day partitions, as the bridge's upkeep makes them
    counts = series_values(values, len(devices) * len(KEYS))
    per_device = max(1, values // len(devices))
    group = max(1, CHUNK_VALUES // per_device)
    latest = []
    written, started = 0, time.monotonic()
    for first in range(0, len(devices), group):
        members = devices[first:first + group]
        rows = (
            row
            for position, device in enumerate(members, start=first)
            for key_number, key in enumerate(KEYS)
            for row in series_rows(device, key, position * len(KEYS) + key_number,
                                   counts[position * len(KEYS) + key_number], start_ms, end_ms, latest)
        )
        with transaction.atomic(), connection.cursor() as cursor:
            write_readings(cursor, connection.vendor, rows)
            roll_up(cursor, members)
        written = sum(counts[:(first + len(members)) * len(KEYS)])
        elapsed = time.monotonic() - started
        log(f"{written:,} of {values:,} values ({100 * written / values:.1f}%), {written / elapsed:,.0f} values/s "
            f"with their rollups, {elapsed:.0f} s")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO telemetry_latestvalue (device_id, key, ts, kind, num, text) VALUES (%s, %s, %s, %s, %s, %s)", latest,
        )
    seconds = time.monotonic() - started
    return {"values": written, "devices": len(devices), "keys": list(KEYS), "days": days, "from_ms": start_ms,
            "to_ms": end_ms, "seconds": round(seconds, 1), "values_per_s": round(written / seconds)}


def settle_filled(postgres_url, sqlite_path):
    """What a database that grew over months has had done to it long since, and a fresh fill not
    yet: on PostgreSQL (given its URL) a vacuum of the filled tables (hint bits, the visibility
    map, statistics) and a checkpoint; on SQLite a checkpoint. Then sync(2): the throwaway
    cluster runs with fsync off, so its checkpoint leaves gigabytes of the fill in the kernel's
    dirty pages, which would be written out while the filled database is measured. Else that
    measures the machine catching up with the fill. Returns the seconds it took."""
    started = time.monotonic()
    if postgres_url:
        with psycopg.connect(postgres_url, autocommit=True) as connection:
            connection.execute("VACUUM (ANALYZE)")
            connection.execute("CHECKPOINT")
    else:
        with closing(sqlite3.connect(sqlite_path, timeout=60)) as database:
            database.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    os.sync()
    return round(time.monotonic() - started, 1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, required=True)
    parser.add_argument("--values", type=int, required=True)
    parser.add_argument("--days", type=int, required=True)
    parser.add_argument("--end", type=int, required=True, help="epoch ms: every value is before it")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
    django.setup()
    print(json.dumps(fill(device_ids(args.devices), args.values, args.days, args.end)))


if __name__ == "__main__":
    main()
