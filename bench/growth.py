"""Does the hub stay as fast when its database is full? The same measurements on an empty
database and then, in the same run and on the same stack, on one filled with months of history.

    python -m bench.growth                        # 50 million values over 90 days from 1,000 devices
    python -m bench.growth --database postgres    # on a throwaway PostgreSQL cluster
    python -m bench.growth --database postgres --bridges 2   # two bridges in the shared group
    python -m bench.growth --quick                # 100,000 values of 20 devices, short phases: what CI runs

On each database: the raw ceiling (a bare paho subscriber draining a backlog) and our bridge's
drain ceiling (bench.scale.drain_ceiling); RAW_SHARE of the empty run's raw ceiling offered for
a while with dashboards watching (bench.run.scenario_ingest: publish-to-dashboard p99), the
same rate on both; each of these --repeats times (3; the median is the figure, every run is
kept); history queries of one key through the HTTP API (15 minutes raw, 24 hours,
30 and 365 days bucketed: p95); bytes on disk per stored value; one retention pass keeping a
third of the filled days raw, last, as it deletes. The fill (bench.fill) writes through the
database's bulk path, not MQTT. Empty first: a fill cannot be undone cheaply, and the empty
database then holds nothing but the scenarios' own readings.

Prints a table of both with their ratio and the targets, and the command; --out gets the JSON.
"""
import argparse
import json
import os
import random
import shlex
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import closing
from pathlib import Path

import psycopg

from bench.fill import DAY_MS, KEYS, settle_filled
from bench.prepare import device_ids
from bench.run import RAW_SHARE, finish, log, machine, scenario_ingest, settle_rollups
from bench.scale import drain_ceiling
from bench.sqlite_files import sqlite_bytes
from bench.stack import ROOT, Stack
from bench.stats import Histogram

FULL = {"values": 50_000_000, "devices": 1_000, "days": 90, "backlog": 60_000, "ingest_seconds": 60, "queries": 50,
        "settle_rollups": True, "repeats": 3}
QUICK = {"values": 100_000, "devices": 20, "days": 3, "backlog": 2_000, "ingest_seconds": 2, "queries": 5,
         "settle_rollups": False, "repeats": 2}  # checks the bench works; each wait would last up to a minute
# (name, span, bucket seconds or None for raw points, p95 target in ms). Buckets chosen so
# each answer stays within the API's point limit, and from the coarsest rollups that fit.
QUERIES = (
    ("raw 15 min", 15 * 60_000, None, 50),
    ("24 h by minute", DAY_MS, 60, 100),
    ("30 d by hour", 30 * DAY_MS, 3600, 100),
    ("365 d by day", 365 * DAY_MS, 86400, 200),
)
# The full database's ceilings must stay within this share of the empty one's.
LEAST_RATIO = 0.9
DASHBOARD_P99_MS = 250


def history_queries(stack, devices, end_ms, repeats, seed=1):
    """Each of QUERIES `repeats` times, ending at `end_ms`, for one key of a random device:
    the time each answer took (p50, p95, max) and the points the answers held."""
    chooser = random.Random(seed)

    def get(span, bucket):
        params = f"keys={chooser.choice(KEYS)}&from={end_ms - span}&to={end_ms}" + (f"&bucket={bucket}" if bucket else "")
        url = f"{stack.url}/api/devices/{chooser.choice(devices)}/readings?{params}"
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Cookie": stack.cookie}), timeout=60) as response:
            return sum(len(series["points"]) for series in json.loads(response.read())["series"].values())

    get(*QUERIES[0][1:3])  # untimed: the web process's first request loads the API's code
    figures = {}
    for name, span, bucket, target in QUERIES:
        timings, points = Histogram(), 0
        for _ in range(repeats):
            started = time.perf_counter()
            points += get(span, bucket)
            timings.add((time.perf_counter() - started) * 1000)
        figures[name] = {**timings.summary(), "target_p95_ms": target, "points_per_answer": round(points / repeats, 1)}
    return figures


def disk_bytes(stack):
    """Bytes on disk of the stored history: on PostgreSQL the telemetry tables with their
    indexes (partitions included); on SQLite the database file and its write-ahead log, after a
    checkpoint has moved the log into the file (the log's size says how large the latest
    transactions were, the fill's above all, not how much is stored)."""
    if stack.postgres:
        with psycopg.connect(stack.postgres.url) as connection:
            return int(connection.execute(
                "SELECT COALESCE(sum(pg_total_relation_size(oid)), 0) FROM pg_class "
                "WHERE relkind = 'r' AND relname LIKE 'telemetry\\_%'"
            ).fetchone()[0])
    with closing(sqlite3.connect(stack.database, timeout=60)) as database:
        database.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return sqlite_bytes(stack.database)


def retention_pass(stack, raw_days):
    """One retention pass keeping `raw_days` days of raw readings, in a process of its own."""
    env = {**stack.env, "HUB_RETAIN_RAW_DAYS": str(raw_days)}
    return finish(subprocess.Popen([sys.executable, "-m", "bench.retention_pass"], cwd=ROOT, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), None)


def fill(stack, sizes, end_ms):
    """bench.fill in the hub's environment, its progress on our stderr."""
    args = [sys.executable, "-m", "bench.fill", "--devices", str(sizes["devices"]), "--values", str(sizes["values"]),
            "--days", str(sizes["days"]), "--end", str(end_ms)]
    result = subprocess.run(args, cwd=ROOT, env=stack.env, stdout=subprocess.PIPE, text=True)
    if result.returncode:
        raise RuntimeError(f"{shlex.join(args)} failed ({result.returncode})")
    return json.loads(result.stdout.strip().splitlines()[-1])


def median_run(runs, key):
    """The run whose `key(run)` is the median of `runs` (an odd count; of an even one, the
    higher middle)."""
    return sorted(runs, key=key)[len(runs) // 2]


def ceilings(stack, sizes, name):
    """The raw ceiling and our drain ceiling, each the median of `repeats` drains: one drain of
    60,000 readings lasts 2-3 s on a fast machine, and drains of one database in one run
    differed up to threefold, too much for a ratio of 0.9 to be told from one of each."""
    runs = []
    for number in range(sizes["repeats"]):
        waited = settle_rollups(stack, sizes, name)
        log(f"{name}: draining {sizes['backlog']:,} readings, raw and through our bridge ({number + 1} of {sizes['repeats']})")
        runs.append({**drain_ceiling(stack, sizes["backlog"], raw=True), "rollups_waited_s": waited})
        stack.wait_drained()
    return {
        "raw_readings_per_s": median_run(runs, lambda run: run["raw_readings_per_s"])["raw_readings_per_s"],
        "readings_per_s": median_run(runs, lambda run: run["readings_per_s"])["readings_per_s"],
        "stored": min(run["stored"] for run in runs), "runs": runs,
    }


def ingests(stack, sizes, name, rate):
    """`rate` offered `repeats` times: the run of the median dashboard p99, with every run's p99."""
    runs = []
    for _ in range(sizes["repeats"]):
        waited = settle_rollups(stack, sizes, name)
        runs.append({**scenario_ingest(stack, rate, sizes["ingest_seconds"]), "rollups_waited_s": waited})
    p99s = [run["publish_to_websocket"]["p99_ms"] for run in runs]
    return {**median_run(runs, lambda run: run["publish_to_websocket"]["p99_ms"] or 0), "p99s_ms": p99s}


def measure(stack, figures, save, sizes, end_ms, rate=None):
    """Every figure of one database into `figures`, saved after each step; the ingest at
    `rate`, or at RAW_SHARE of this raw ceiling."""
    name = "full" if rate else "empty"
    figures["ceiling"] = ceilings(stack, sizes, name)
    save()
    rate = rate or round(RAW_SHARE * figures["ceiling"]["raw_readings_per_s"])
    figures["ingest"] = ingests(stack, sizes, name, rate)
    save()
    log(f"{name}: history queries, {sizes['queries']} of each")
    figures["history"] = history_queries(stack, device_ids(sizes["devices"]), end_ms, sizes["queries"])
    values = stack.counted_rows()
    size = disk_bytes(stack)
    figures["disk"] = {"bytes": size, "values": values, "bytes_per_value": round(size / values, 1) if values else None}
    save()
    raw_days = max(1, sizes["days"] // 3)
    log(f"{name}: a retention pass keeping {raw_days} days raw")
    figures["retention"] = {"raw_days": raw_days, **retention_pass(stack, raw_days)}
    save()


def ratio(full, empty):
    return round(full / empty, 2) if full and empty else None


def comparisons(results):
    """Rows of (figure, empty, full, full/empty or empty/full, target)."""
    empty, full = results["empty"], results["full"]
    rows = []
    for label, path in (("raw ceiling, readings/s", ("ceiling", "raw_readings_per_s")),
                        ("drain ceiling, readings/s", ("ceiling", "readings_per_s"))):
        a, b = empty[path[0]][path[1]], full[path[0]][path[1]]
        rows.append((label, a, b, ratio(b, a), f"full/empty >= {LEAST_RATIO}" if "drain" in label else ""))
    a, b = (phase["ingest"]["publish_to_websocket"]["p99_ms"] for phase in (empty, full))
    rows.append((f"ingest {empty['ingest']['offered_per_s']:,}/s, dashboard p99 ms", a, b, ratio(a, b),
                 f"<= {DASHBOARD_P99_MS} ms, empty/full >= {LEAST_RATIO}"))
    for name, *_ in QUERIES:
        a, b = empty["history"][name]["p95_ms"], full["history"][name]["p95_ms"]
        rows.append((f"history {name}, p95 ms", a, b, ratio(b, a), f"<= {full['history'][name]['target_p95_ms']} ms"))
    rows.append(("retention pass, s", empty["retention"]["seconds"], full["retention"]["seconds"], None, ""))
    rows.append(("bytes on disk per value", empty["disk"]["bytes_per_value"], full["disk"]["bytes_per_value"], None, ""))
    return rows


def listed(numbers):
    return ", ".join(f"{number:,}" if number is not None else "-" for number in numbers)


def report(results):
    print(f"\n{'figure':<44}{'empty':>12}{'full':>12}{'ratio':>8}  target")
    for label, a, b, share, target in comparisons(results):
        print(f"{label:<44}{a if a is not None else '-':>12}{b if b is not None else '-':>12}"
              f"{share if share is not None else '':>8}  {target}")
    filled = results["fill"]
    print(f"fill: {filled['values']:,} values of {filled['devices']:,} devices over {filled['days']} days in "
          f"{filled['seconds']:,} s ({filled['values_per_s']:,} values/s, rollups included), settled in {filled['settle_s']} s")
    for name in ("empty", "full"):
        phase = results[name]
        runs = phase["ceiling"]["runs"]
        print(f"{name}: medians of {len(runs)} runs; raw ceilings {listed(run['raw_readings_per_s'] for run in runs)}; "
              f"drain ceilings {listed(run['readings_per_s'] for run in runs)}; "
              f"ingest p99 ms {listed(phase['ingest']['p99s_ms'])}")
        print(f"{name}: {phase['disk']['values']:,} values in {phase['disk']['bytes'] / 2 ** 20:,.1f} MiB; retention "
              f"deleted {phase['retention']['deleted']} in {phase['retention']['seconds']} s; ingest stored "
              f"{phase['ingest']['stored']:,} of {phase['ingest']['published']:,}")
    print(f"load average (1, 5, 15 min): {results['load_before']} before, {results['load_after']} after")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--quick", action="store_true", help="a small database and short phases, to check the bench works")
    parser.add_argument("--values", type=int, help=f"values to fill (default {FULL['values']:,})")
    parser.add_argument("--days", type=int, help=f"days the filled values span, up to now (default {FULL['days']})")
    parser.add_argument("--devices", type=int, help=f"devices, 5 keys each (default {FULL['devices']:,})")
    parser.add_argument("--repeats", type=int, help=f"drains and ingests of each database; the median counts (default {FULL['repeats']})")
    parser.add_argument("--bridges", type=int, default=1,
                        help="bridge processes, sharing the broker's load through the shared subscription group")
    parser.add_argument("--out", default="var/bench/growth.json")
    args = parser.parse_args()
    sizes = dict(QUICK if args.quick else FULL)
    sizes.update({name: getattr(args, name) for name in ("values", "days", "devices", "repeats") if getattr(args, name)})
    command = "python -m bench.growth " + shlex.join(sys.argv[1:])
    results = {"command": command, "machine": machine(), "database": args.database, "bridges": args.bridges, "sizes": sizes,
               "load_before": [round(load, 2) for load in os.getloadavg()]}
    log(f"{command} on {results['machine']['cpu']}, {results['machine']['cores']} cores, {args.bridges} bridge(s)")
    end_ms = int(time.time() * 1000)  # the filled history ends here; every query too
    # Raw readings kept longer than the fill spans, so the bridge's own retention keeps them all.
    keep = {"HUB_RETAIN_RAW_DAYS": str(sizes["days"] + 10)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save():  # each step's figures kept as soon as it has them: the full size runs for hours
        out.write_text(json.dumps(results, indent=2))

    with tempfile.TemporaryDirectory(prefix="telehub-growth-") as workdir:
        stack = Stack(workdir, devices=sizes["devices"], database=args.database, log=log, settings=keep)
        stack.add_bridges(args.bridges - 1)
        try:
            stack.start()
            measure(stack, results.setdefault("empty", {}), save, sizes, end_ms)
            log(f"fill: {sizes['values']:,} values, {sizes['devices']:,} devices, {sizes['days']} days")
            results["fill"] = fill(stack, sizes, end_ms)
            log("fill: settling (PostgreSQL: VACUUM (ANALYZE) and CHECKPOINT; SQLite: a checkpoint; then sync)")
            results["fill"]["settle_s"] = settle_filled(stack.postgres.url if stack.postgres else None, stack.database)
            log(f"fill: settled in {results['fill']['settle_s']} s")
            save()
            measure(stack, results.setdefault("full", {}), save, sizes, end_ms, rate=results["empty"]["ingest"]["offered_per_s"])
        finally:
            stack.stop()
    results["load_after"] = [round(load, 2) for load in os.getloadavg()]
    save()
    report(results)
    print(f"\nfigures: {out}\ncommand: {command}")


if __name__ == "__main__":
    main()
