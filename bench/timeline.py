"""Where a live rate's tail comes from: one ingest rate on a bench Stack, the bridge's figures
second by second.

    python -m bench.timeline --rate 3650 --seconds 40 --warm 60
    python -m bench.timeline --rate 15000 --database postgres --bridges 2
    python -m bench.timeline --rate 3610 --database postgres --bridges 2 --fill 10000000

With --fill, the database first gets that much history of other keys over FILL_DAYS days
(bench.growth's fill, settled as there), so that the tail of a full database can be told apart
from an empty one's. It runs bench.run's ingest scenario (10 dashboards): first for --warm seconds unmeasured, so that
the database is in its steady state (each device's newest rows on pages of their own), then for
--seconds, reading the (first) bridge's /metrics every SAMPLE_SECONDS and the database's checkpoints: on
SQLite the times the WAL was seen to start over after a checkpoint (its header's salts changed
since the last sample: at most one a sample), on PostgreSQL the checkpoints its statistics count.
For each second it prints the oldest reading held unstored at worst, the most readings held,
the flushes and the time they took, the minutes rolled up and the checkpoints; then the
dashboards' latency over the run.
"""
import argparse
import shlex
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg

from bench.fill import settle_filled
from bench.growth import fill
from bench.run import log, scenario_ingest
from bench.stack import Stack
from telemetry.checkpoints import log_salts

SAMPLE_SECONDS = 0.1
FILL_DAYS = 90
DEVICES = 1_000
def postgres_checkpoints(connection):
    """The checkpoints PostgreSQL has begun, timed and requested, on a psycopg `connection` in
    autocommit (statistics are read once per transaction): pg_stat_checkpointer from version 17,
    pg_stat_bgwriter before."""
    if connection.info.server_version >= 170000:
        sql = "SELECT num_timed + num_requested FROM pg_stat_checkpointer"
    else:
        sql = "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"
    return connection.execute(sql).fetchone()[0]


class LogRestarts:
    """Counts the times the WAL of the SQLite database at `path` is seen to start over, when
    called: its salts differ from those of the call before (telemetry.checkpoints.log_salts)."""

    def __init__(self, path):
        self.path = path
        self.salts = log_salts(path)
        self.count = 0

    def __call__(self):
        salts = log_salts(self.path)
        if salts is not None:
            if self.salts is not None and salts != self.salts:
                self.count += 1
            self.salts = salts
        return self.count


def checkpoint_counter(stack):
    """A function counting the stack's database's checkpoints so far."""
    if stack.postgres:
        connection = psycopg.connect(stack.postgres.url, autocommit=True)
        return lambda: postgres_checkpoints(connection)
    return LogRestarts(stack.database)


class Sampler:
    """Samples the bridge's metrics and `checkpoints()` in a thread until stopped."""

    def __init__(self, stack, checkpoints):
        self.stack = stack
        self.checkpoints = checkpoints
        self.samples = []  # (time.time(), {metric name: value})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self):
        while not self._stop.wait(SAMPLE_SECONDS):
            figures = self.stack.bridge_metrics()
            figures["checkpoints"] = self.checkpoints()
            self.samples.append((time.time(), figures))

    def stop(self):
        self._stop.set()
        self._thread.join()


def per_second(samples):
    """One row a second, until the last flush: the worst of the gauges and the increase of the counters."""
    rows = []
    start, before = samples[0]
    worst_age = worst_held = 0.0
    for at, figures in samples[1:]:
        worst_age = max(worst_age, figures["telehub_bridge_oldest_held_seconds"])
        worst_held = max(worst_held, figures["telehub_bridge_readings_held"])
        if at - start < len(rows) + 1:
            continue
        flushes = figures["telehub_bridge_flush_seconds_count"] - before["telehub_bridge_flush_seconds_count"]
        flushing = figures["telehub_bridge_flush_seconds_sum"] - before["telehub_bridge_flush_seconds_sum"]
        rows.append({
            "second": len(rows), "oldest_held_ms": round(worst_age * 1000), "held": round(worst_held),
            "flushes": round(flushes), "flushing_ms": round(flushing * 1000),
            "rolled_up": round(figures["telehub_rollup_minutes_total"] - before["telehub_rollup_minutes_total"]),
            "checkpoints": figures["checkpoints"] - before["checkpoints"],
        })
        before, worst_age, worst_held = figures, 0.0, 0.0
    while rows and not rows[-1]["flushes"] and not rows[-1]["held"]:
        rows.pop()  # the dashboards' and the drain's wait after the last flush
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, required=True, help="readings/s offered")
    parser.add_argument("--seconds", type=int, default=40)
    parser.add_argument("--warm", type=int, default=60, help="seconds of the same rate first, not measured")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--bridges", type=int, default=1, help="bridge processes in the shared group; the first one's figures")
    parser.add_argument("--fill", type=int, default=0, help=f"values of history over {FILL_DAYS} days first")
    args = parser.parse_args()
    command = "python -m bench.timeline " + shlex.join(sys.argv[1:])
    stack = Stack(Path(tempfile.mkdtemp(prefix="telehub-timeline-")), devices=DEVICES, database=args.database, log=log)
    stack.add_bridges(args.bridges - 1)
    try:
        stack.start()
        if args.fill:
            filled = fill(stack, {"devices": DEVICES, "values": args.fill, "days": FILL_DAYS}, int(time.time() * 1000))
            settled = settle_filled(stack.postgres.url if stack.postgres else None, stack.database)
            log(f"filled {filled['values']:,} values in {filled['seconds']:,} s, settled in {settled} s")
        if args.warm:
            scenario_ingest(stack, args.rate, args.warm)
            stack.wait_rolled_up()
        sampler = Sampler(stack, checkpoint_counter(stack))
        result = scenario_ingest(stack, args.rate, args.seconds)
        sampler.stop()
    finally:
        stack.stop()
    columns = ["second", "oldest_held_ms", "held", "flushes", "flushing_ms", "rolled_up", "checkpoints"]
    print("  ".join(f"{name:>14}" for name in columns))
    for row in per_second(sampler.samples):
        print("  ".join(f"{row[name]:>14,}" for name in columns))
    latency = result["publish_to_websocket"]
    bridges = ", ".join(f"{figures['cpu_percent']}%" for name, figures in result["resources"].items() if name.startswith("bridge"))
    print(f"\n{args.rate:,} readings/s for {args.seconds} s, {result['stored']:,} stored, {result['lost']:,} lost; "
          f"dashboards p50 {latency['p50_ms']} ms, p95 {latency['p95_ms']} ms, p99 {latency['p99_ms']} ms; "
          f"the bridges at {bridges} of a core")
    print(f"command: {command}")


if __name__ == "__main__":
    main()
