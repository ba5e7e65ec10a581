"""A database outage under load: the bridge's memory while the database is away, and every
reading stored exactly once after it comes back.

    python -m bench.outage --rate 5000 --outage 600    # a 10-minute outage at 5,000 readings/s
    python -m bench.outage --rate 500 --outage 5 --before 2 --after 2 --devices 20   # seconds

Runs the stack as bench.run does (bench.stack), publishes QoS 1 readings at `--rate` for
`--before` + `--outage` + `--after` seconds, and from `--before` seconds on makes the database
unavailable for `--outage` seconds: SQLite's write lock (BEGIN EXCLUSIVE) or, on PostgreSQL,
an EXCLUSIVE lock on the readings table, held by this process. It prints the bridge's (and the
broker's) memory every `--every` seconds, then waits for the backlog to be stored and checks
that the rows are exactly the readings published (each has its own device-set ts, and the
unique index (device, key, ts) stores a redelivered copy no second time).
The last line is the figures as JSON; the one before, the command.
"""
import argparse
import json
import shlex
import sqlite3
import sys
import tempfile
import threading
import time

import psycopg

from bench.run import VALUES_PER_READING, StorageWatch, finish, log, publishers
from bench.stack import Stack


class DatabaseOutage:
    """Holds a lock that stops the hub's writes to the readings, from a connection of its own,
    until `end()`; reads still work, so the bench can count rows meanwhile."""

    def __init__(self, stack):
        self.stack = stack
        self.connection = None

    def begin(self):
        if self.stack.postgres:
            self.connection = psycopg.connect(self.stack.postgres.url)
            self.connection.execute("LOCK TABLE telemetry_reading IN EXCLUSIVE MODE")
        else:
            self.connection = sqlite3.connect(self.stack.database, isolation_level=None)
            self.connection.execute("BEGIN EXCLUSIVE")

    def end(self):
        self.connection.rollback() if self.stack.postgres else self.connection.execute("ROLLBACK")
        self.connection.close()


def mib(size):
    return round(size / 2**20, 1)


def run(stack, rate, before, outage, after, every):
    watch = StorageWatch(stack)
    # The samples count rows committed (a small table here): the bridges' metrics count a flush
    # a moment after its commit, and would show the last one before the outage during it.
    rows_before = stack.counted_rows()
    seconds = before + outage + after
    log(f"outage: {rate:,} readings/s QoS 1 for {seconds:g} s, the database away from {before:g} s for {outage:g} s")
    load = publishers(stack, rate, seconds, stack.devices)
    started = time.monotonic()
    samples = []
    lock = DatabaseOutage(stack)
    phase = "before"
    while any(process.poll() is None for process in load):
        elapsed = time.monotonic() - started
        if phase == "before" and elapsed >= before:
            lock.begin()
            phase = "outage"
        elif phase == "outage" and elapsed >= before + outage:
            lock.end()
            phase = "after"
        rss = {name: stack.meter.rss.get(name, 0) for name in ("bridge", "mosquitto")}
        stored = (stack.counted_rows() - rows_before) // VALUES_PER_READING
        samples.append({"s": round(elapsed, 1), "phase": phase, "bridge_mib": mib(rss["bridge"]),
                        "mosquitto_mib": mib(rss["mosquitto"]), "stored": stored})
        if len(samples) == 1 or len(samples) % every == 0:
            log(f"{elapsed:6.0f} s {phase:>7}: bridge {mib(rss['bridge'])} MiB, mosquitto {mib(rss['mosquitto'])} MiB, "
                f"{stored:,} readings stored")
        time.sleep(1)
    if phase == "outage":  # the publishers ended early: end the outage anyway
        lock.end()
    published = sum(finish(process, 600)["published"] for process in load)
    log(f"outage: {published:,} published; waiting for the backlog to be stored")
    drained_from = time.monotonic()
    watch.wait_for(published * VALUES_PER_READING, idle_timeout=60)
    rows = stack.counted_rows()
    peak = {name: mib(stack.meter.peak_rss.get(name, 0)) for name in ("bridge", "mosquitto")}
    during = [sample["bridge_mib"] for sample in samples if sample["phase"] == "outage"]
    return {
        "rate": rate, "outage_s": outage, "published": published, "stored": rows // VALUES_PER_READING,
        "exactly_once": rows == published * VALUES_PER_READING,
        "drained_after_s": round(time.monotonic() - drained_from, 1),
        "bridge_mib_before_outage": max((sample["bridge_mib"] for sample in samples if sample["phase"] == "before"), default=None),
        "bridge_mib_max_during_outage": max(during) if during else None,
        "peak_mib": peak, "samples": samples,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=5000, help="readings per second, QoS 1")
    parser.add_argument("--outage", type=float, default=600, help="seconds the database is away")
    parser.add_argument("--before", type=float, default=30, help="seconds of load before the outage")
    parser.add_argument("--after", type=float, default=30, help="seconds of load after it")
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--every", type=int, default=10, help="print the memory every this many seconds")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    command = "python -m bench.outage " + shlex.join(sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="telehub-outage-") as workdir:
        stack = Stack(workdir, devices=args.devices, database=args.database, log=log)
        try:
            stack.start()
            figures = run(stack, args.rate, args.before, args.outage, args.after, args.every)
        finally:
            stack.stop()
    print(f"bridge: {figures['bridge_mib_before_outage']} MiB before the outage, at most "
          f"{figures['bridge_mib_max_during_outage']} MiB during it, peak {figures['peak_mib']['bridge']} MiB; "
          f"mosquitto peak {figures['peak_mib']['mosquitto']} MiB")
    print(f"{figures['stored']:,} of {figures['published']:,} readings stored, "
          f"{'exactly once' if figures['exactly_once'] else 'NOT exactly once'}, "
          f"the backlog stored {figures['drained_after_s']} s after the last publish")
    print(f"command: {command}")
    print(json.dumps({"command": command, **figures}))
    if not figures["exactly_once"]:
        sys.exit("stored rows differ from the readings published")


if __name__ == "__main__":
    main()
