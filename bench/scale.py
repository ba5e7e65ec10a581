"""Scaling out on one machine: one bridge and one web process against two of each, in one run;
then one of the two bridges killed for good.

    python -m bench.scale                      # 60,000-reading backlog, 5,000 readings/s for 20 s
    python -m bench.scale --backlog 3000 --rate 500 --seconds 3 --devices 50    # seconds

First the raw ceiling: a bare paho subscriber drains a backlog. For each topology: the drain
ceiling (the same backlog queued at the broker while the bridges are stopped, then drained by
them, every reading stored), and readings offered at `--rate` with 10
dashboards split over the web processes: publish-to-dashboard p99, and the CPU the hub's
processes spent per reading. Every bridge is in one shared subscription group, one bridge too,
so the two topologies differ only in their number of processes. Then, at `--rate` with two
bridges, one is SIGKILLed a third of the way in: how long until every reading published is
stored, its share included (a dead bridge's queued share is drained by the survivor).
The last line is the figures as JSON; the one before, the command.
"""
import argparse
import json
import shlex
import signal
import sys
import tempfile
import time

from bench.run import (
    LOAD_PROCESSES, VALUES_PER_READING, StorageWatch, dashboards, drain_rate, finish, log, merged, publishers, resources,
)
from bench.stack import Stack

WATCHERS = 10


def drain_ceiling(stack, backlog, raw=False):
    """Readings/s the running bridges store, draining a backlog queued while they were stopped;
    with `raw`, first the readings/s a bare paho subscriber drains the same backlog at (the raw
    ceiling of this run, which every figure here is relative to)."""
    raw_id = f"{stack.bridge_client_id}-raw"
    if raw:  # its session, so the broker queues the backlog for it too
        finish(stack.spawn("-m", "bench.raw_subscriber", "--url", stack.login_url("raw"), "--client-id", raw_id, "--expect", "0"), 60)
    stack.stop_bridge()
    for process in publishers(stack, 20_000, backlog / 20_000, stack.devices):
        finish(process, 300)
    figures = {}
    if raw:
        figures["raw_readings_per_s"] = drain_rate(finish(stack.spawn(
            "-m", "bench.raw_subscriber", "--url", stack.login_url("raw"), "--client-id", raw_id, "--expect", str(backlog)), 600))["readings_per_s"]
    watch = StorageWatch(stack)
    stack.start_bridge()
    stored = watch.wait_for(backlog * VALUES_PER_READING) // VALUES_PER_READING
    # From the first row stored to the last: the bridges start one after another.
    elapsed = max(watch.last_change - (watch.first_change or watch.last_change), 0.1)
    return {**figures, "backlog": backlog, "stored": stored, "readings_per_s": round(stored / elapsed)}


def offered_load(stack, urls, rate, seconds):
    """Readings at `rate` for `seconds`, dashboards on one device each, spread over `urls`."""
    clients = []
    for number, url in enumerate(urls):
        share = WATCHERS // len(urls) + (number < WATCHERS % len(urls))
        clients += dashboards(stack, share, "device", seconds + 8, devices=stack.devices, url=url)[0]
    watch = StorageWatch(stack)
    before = stack.meter.start_interval()
    started = time.time()
    published = sum(finish(process, seconds + 120)["published"] for process in publishers(stack, rate, seconds, stack.devices))
    stored = watch.wait_for(published * VALUES_PER_READING) // VALUES_PER_READING
    elapsed = time.time() - started
    delivered, latency = merged(finish(process, 60) for process in clients)
    used = resources(stack, before, elapsed)
    hub_cpu_seconds = sum(figures["cpu_percent"] for name, figures in used.items() if not name.startswith(LOAD_PROCESSES)) / 100 * elapsed
    return {
        "offered_per_s": rate, "seconds": seconds, "published": published, "stored": stored,
        "publish_to_websocket": latency.summary(), "delivered": delivered["readings"],
        "hub_cpu_ms_per_reading": round(1000 * hub_cpu_seconds / published, 3) if published else None,
        "resources": used, "drained_after_s": stack.wait_drained(),
    }


def topology(stack, urls, backlog, rate, seconds, raw=False):
    log(f"{len(stack.bridges)} bridge(s), {len(urls)} web process(es): draining {backlog:,} readings")
    figures = {"bridges": len(stack.bridges), "webs": len(urls), "ceiling": drain_ceiling(stack, backlog, raw)}
    stack.wait_drained()
    log(f"{len(stack.bridges)} bridge(s), {len(urls)} web process(es): {rate:,} readings/s for {seconds} s")
    figures["load"] = offered_load(stack, urls, rate, seconds)
    return figures


def kill_one(stack, rate, seconds):
    """SIGKILLs the last bridge a third of the way into `seconds` at `rate`; how long from the
    kill, and from the last publish, until every reading is stored."""
    victim = stack.bridges[-1]
    log(f"kill: {rate:,} readings/s for {seconds} s, {victim.name} SIGKILLed after {seconds / 3:.0f} s")
    rows_before = stack.counted_rows()
    watch = StorageWatch(stack)
    load = publishers(stack, rate, seconds, stack.devices)
    time.sleep(seconds / 3)
    victim.process.send_signal(signal.SIGKILL)
    killed_at = time.time()
    published = sum(finish(process, seconds + 120)["published"] for process in load)
    published_at = time.time()
    watch.wait_for(published * VALUES_PER_READING, idle_timeout=90)
    stored = (stack.counted_rows() - rows_before) // VALUES_PER_READING
    all_stored = stored == published  # each reading has its own device-set ts: a copy is stored once
    return {
        "offered_per_s": rate, "published": published, "stored": stored, "all_stored": all_stored,
        "stored_s_after_kill": round(watch.last_change - killed_at, 1) if all_stored else None,
        "stored_s_after_last_publish": round(watch.last_change - published_at, 1) if all_stored else None,
    }


def describe(figures):
    load = figures["load"]
    latency = load["publish_to_websocket"]
    return (f"{figures['bridges']} bridge(s), {figures['webs']} web: ceiling {figures['ceiling']['readings_per_s']:,} readings/s; "
            f"{load['offered_per_s']:,}/s offered: {load['stored']:,} of {load['published']:,} stored, dashboards p50 "
            f"{latency['p50_ms']} ms, p99 {latency['p99_ms']} ms, hub CPU {load['hub_cpu_ms_per_reading']} ms per reading")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backlog", type=int, default=60_000, help="readings queued for the drain ceiling")
    parser.add_argument("--rate", type=int, default=5_000, help="readings per second offered")
    parser.add_argument("--seconds", type=float, default=20, help="seconds of offered load, and of the kill run")
    parser.add_argument("--devices", type=int, default=1_000)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    command = "python -m bench.scale " + shlex.join(sys.argv[1:])
    results = {"command": command}
    with tempfile.TemporaryDirectory(prefix="telehub-scale-") as workdir:
        stack = Stack(workdir, devices=args.devices, database=args.database, log=log)
        try:
            stack.start()
            results["one"] = topology(stack, [stack.url], args.backlog, args.rate, args.seconds, raw=True)
            results["raw_readings_per_s"] = results["one"]["ceiling"]["raw_readings_per_s"]
            stack.stop_bridge()
            stack.add_bridges(1)
            second_web = stack.add_web()
            stack.start_bridge()  # both bridges' sessions exist before the backlog is queued
            results["two"] = topology(stack, [stack.url, second_web], args.backlog, args.rate, args.seconds)
            results["kill"] = kill_one(stack, args.rate, args.seconds)
        finally:
            stack.stop()
    raw = results["raw_readings_per_s"]
    print(f"raw ceiling (a bare paho subscriber draining the same backlog): {raw:,} readings/s")
    for name in ("one", "two"):
        print(describe(results[name]) + f" ({results[name]['ceiling']['readings_per_s'] / raw:.2f} of raw)")
    kill = results["kill"]
    print(f"one of two bridges killed at {kill['offered_per_s']:,} readings/s: {kill['stored']:,} of {kill['published']:,} "
          f"stored, the last {kill['stored_s_after_kill']} s after the kill ({kill['stored_s_after_last_publish']} s after the last publish)")
    print(f"command: {command}")
    print(json.dumps(results))
    if not kill["all_stored"]:
        sys.exit("not every reading was stored after a bridge was killed")


if __name__ == "__main__":
    main()
