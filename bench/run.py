"""Telehub's benchmark suite, against the real stack on this machine.

    python -m bench.run            # the whole suite, a few minutes
    python -m bench.run --quick    # seconds, small counts: what CI runs so the suite cannot rot
    python -m bench.run --soak 10  # also a 10-minute soak at 5,000 readings/s
    python -m bench.run --database postgres   # on a throwaway PostgreSQL cluster instead of SQLite
    python -m bench.run --bridges 2          # two bridge processes in the shared subscription group

It prints a table and writes the figures as JSON (--out). Scenarios:
- ceiling: one backlog of readings queued at the broker, drained in turn by a bare paho
  subscriber that only parses (the raw ceiling), the naive bridge (as in the Channels tutorial:
  per reading one ORM insert and one group_send on the core layer, a dashboard in every
  device's group) and our bridge, which stores every reading too.
- ingest: readings offered at fixed rates for a while, 10 dashboards each watching a device;
  and at 35% of the raw ceiling for 60 s when the run measured it.
Every scenario, and every ingest rate, waits for the bridge to drain before the next starts,
and in a full run for its rollup job to catch up too, and says how long that took.
- fanout: a fleet at 1 Hz watched by many fleet dashboards.
- page: the fleet page in headless Chromium while the whole fleet reports every second.
- idle: many idle dashboard sockets on one daphne: memory per socket, idle CPU.
- soak: memory of every process at minute 2 and at the end.
- alarms: the ceiling with a threshold rule on every device against none (--only alarms).
- alarm_latency: from a triggering reading, or its for_seconds running out, to the alarm's row
  and its frame on a fleet socket, under load (--only alarm_latency; bench.alarm_latency).
"""
import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.stack import MAX_GENERATORS, Stack
from bench.stats import Histogram, table

FULL = {
    "backlog": 60_000,
    "naive_seconds": 10,
    "ingest": [(1_000, 20), (5_000, 20), (10_000, 60)],
    "raw_share_seconds": 60,
    "fleet_devices": 1_000,
    "fanout": (200, 20),
    "page_seconds": 10,
    "idle_sockets": 2_000,
    "alarm_rounds": 2,
    "settle_rollups": True,
    "alarm_latency": {"load": 2_000, "triggers": 200, "held": 20, "seconds": 40},
}
QUICK = {
    "backlog": 3_000,
    "naive_seconds": 3,
    "ingest": [(500, 3)],
    "raw_share_seconds": 3,
    "fleet_devices": 50,
    "fanout": (5, 3),
    "page_seconds": 2,
    "idle_sockets": 50,
    "alarm_rounds": 1,
    "settle_rollups": False,  # a quick run checks the suite works: its figures are not kept
    "alarm_latency": {"load": 200, "triggers": 10, "held": 3, "seconds": 3},
}
VALUES_PER_READING = 3  # bench.publisher sends temp, hum and pub
# The load every machine must carry at p99 <= 250 ms to dashboards, as a share of the same run's
# raw ceiling (machines differ two- to four-fold, so the target is a ratio).
RAW_SHARE = 0.35


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def finish(process, timeout):
    """Waits for a helper process and returns the JSON of its last output line."""
    out, err = process.communicate(timeout=timeout)
    lines = out.strip().splitlines()
    if process.returncode or not lines:
        raise RuntimeError(f"{shlex.join(process.args)} failed ({process.returncode}):\n{err[-3000:]}")
    return json.loads(lines[-1])


def wait_open(process):
    """Waits for a dashboards process to report its sockets open (or failed), and returns its report."""
    line = process.stdout.readline()
    if '"open"' not in line:
        raise RuntimeError(f"dashboards did not open: {line}{process.stderr.read()[-3000:]}")
    return json.loads(line)


def publishers(stack, rate, seconds, devices):
    """Load generators, one per 10,000 readings/s (each takes about a seventh of a core at that
    rate), each with its share of the devices."""
    count = max(1, min(MAX_GENERATORS, round(rate / 10_000)))
    share = devices // count
    return [
        stack.spawn("-m", "bench.publisher", "--url", stack.login_url(f"load-{i}"), "--first", str(i * share),
                    "--devices", str(share), "--rate", str(rate / count), "--seconds", str(seconds), name=f"publisher-{i}")
        for i in range(count)
    ]


def dashboards(stack, sockets, watch, seconds, devices=1, ramp=2.0, url=None):
    """Dashboard client processes, each socket open or given up (first connects spread over
    `ramp` seconds, failed ones retried), listening for `seconds` from then; and how the
    connecting went (see connections)."""
    per_process = 500 if watch in ("idle", "naive") else 100
    processes = []
    for number, first in enumerate(range(0, sockets, per_process)):
        processes.append(stack.spawn(
            "-m", "bench.dashboards", "--url", (url or stack.url).replace("http", "ws", 1), "--cookie", stack.cookie,
            "--sockets", str(min(per_process, sockets - first)), "--first", str(first), "--watch", watch, "--devices", str(devices),
            "--seconds", str(seconds), "--ramp", str(ramp), name=f"dashboards-{number}",
        ))
    opening = connections([wait_open(process) for process in processes])
    log(f"dashboards: {describe_connections(opening)}")
    return processes, opening


def connections(reports):
    """The dashboards processes' sockets together: opened, failed (never opened), connect
    attempts refused and retried, closed by the server and errors (final reports only), and
    the seconds until the last socket opened."""
    reports = list(reports)
    total = {key: sum(report.get(key, 0) for report in reports)
             for key in ("sockets", "opened", "failed_sockets", "connect_attempts_refused", "closed_sockets")}
    seconds = [report["open_seconds"] for report in reports if report["open_seconds"] is not None]
    total["open_seconds"] = max(seconds) if seconds else None
    total["connects_per_s"] = round(total["opened"] / total["open_seconds"]) if total["open_seconds"] else None
    total["errors"] = sorted({error for report in reports for error in report.get("errors", [])})
    return total


def describe_connections(figures):
    text = f"{figures['opened']:,} of {figures['sockets']:,} sockets open"
    if figures["open_seconds"] is not None:
        text += f" after {figures['open_seconds']:.1f} s ({figures['connects_per_s']:,}/s)"
    text += f", {figures['connect_attempts_refused']:,} connect attempts refused and retried"
    if figures["failed_sockets"]:
        text += f", {figures['failed_sockets']:,} never opened"
    if figures["closed_sockets"]:
        text += f", {figures['closed_sockets']:,} closed by the server"
    return text


def merged(results):
    """The dashboards processes' final reports together, and their latencies as one histogram."""
    results = list(results)
    total = connections(results)
    for key in ("readings", "frames", "dropped", "gaps"):
        total[key] = sum(result[key] for result in results)
    total["busiest_frames_per_second"] = max(result["busiest_frames_per_second"] for result in results)
    latency = Histogram()
    for result in results:
        latency.merge(Histogram(result["latency_bins"]))
    return total, latency


class StorageWatch:
    """Polls while readings flow: values stored over time (the bridges' metrics), and
    publish-to-stored latency (the newest latest value's publish time)."""

    def __init__(self, stack):
        self.stack = stack
        self.start_rows = stack.stored_values()
        self.latency = Histogram()
        self.last_change = time.time()
        self.first_change = None  # when the first new row was seen
        self.rows = self.start_rows
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self):
        while not self._stop.wait(0.1):
            rows = self.stack.stored_values()
            now = time.time()
            if rows != self.rows:
                self.rows, self.last_change = rows, now
                self.first_change = self.first_change or now
                published = self.stack.newest_publish_time()
                if published is not None:
                    self.latency.add((now - published) * 1000)

    def wait_for(self, rows, idle_timeout=15):
        """Waits until `rows` more rows are stored, or nothing more is stored for `idle_timeout` s."""
        while self.rows - self.start_rows < rows and time.time() - self.last_change < idle_timeout:
            time.sleep(0.1)
        self._stop.set()
        self._thread.join()
        return self.rows - self.start_rows


def drain_rate(result):
    """A drainer's output as readings drained and readings/s."""
    elapsed = (result["last"] or 0) - (result["first"] or 0)
    return {"drained": result["count"], "readings_per_s": round(result["count"] / elapsed) if elapsed > 0 else None}


LOAD_PROCESSES = ("publisher-", "dashboards-")


def resources(stack, before, seconds):
    after = stack.meter.cpu_seconds()
    return {
        name: {"cpu_percent": round(100 * (after[name] - before.get(name, 0)) / seconds, 1),
               "peak_rss_mib": round(stack.meter.peak_rss.get(name, 0) / 2 ** 20, 1)}
        for name in after
    }


def scenario_ceiling(stack, backlog, naive_seconds):
    log(f"ceiling: queueing {backlog:,} readings for the raw subscriber, the naive bridge and our bridge")
    raw_id, naive_id = f"{stack.bridge_client_id}-raw", f"{stack.bridge_client_id}-naive"
    for name, module, client_id, env in (("raw", "bench.raw_subscriber", raw_id, stack.env),
                                         ("naive", "bench.naive_bridge", naive_id, stack.naive_env)):
        finish(stack.spawn("-m", module, "--url", stack.login_url(name), "--client-id", client_id, "--expect", "0", env=env), 60)
    stack.stop_bridge()
    for process in publishers(stack, 20_000, backlog / 20_000, stack.devices):
        finish(process, 300)
    log("ceiling: raw drains the backlog")
    rates = {"raw": drain_rate(finish(stack.spawn("-m", "bench.raw_subscriber", "--url", stack.login_url("raw"),
                                                  "--client-id", raw_id, "--expect", str(backlog)), 600))}
    log(f"ceiling: naive drains the backlog for at most {naive_seconds} s, {stack.devices:,} dashboards in its groups")
    stack.start_naive()
    try:
        listeners, _ = dashboards(stack, stack.devices, "naive", naive_seconds + 120, devices=stack.devices,
                                  ramp=stack.devices / 200, url=f"http://127.0.0.1:{stack.naive_port}")
        before = stack.meter.start_interval()
        result = finish(stack.spawn("-m", "bench.naive_bridge", "--url", stack.login_url("naive"), "--client-id", naive_id,
                                    "--expect", str(backlog), "--seconds", str(naive_seconds), env=stack.naive_env), 600)
        rates["naive"] = drain_rate(result)
        rates["naive"]["resources"] = resources(stack, before, max((result["last"] or 0) - (result["first"] or 0), 0.1))
        for process in listeners:
            process.terminate()
        delivered = merged(finish(process, 60) for process in listeners)[0]
        rates["naive"]["delivered"] = delivered["readings"]
        rates["naive"]["dashboards"] = {key: value for key, value in delivered.items() if key != "readings"}
    finally:
        stack.stop_naive()
    # Subscribed, their sessions would take a copy of every reading of the scenarios after this.
    for name in ("raw", "naive"):
        stack.end_session(name)
    log("ceiling: our bridge drains the backlog, storing every reading")
    rates["ours"] = drain_ours(stack, backlog)
    ours = rates["ours"]["readings_per_s"] or 0
    for name in ("raw", "naive"):
        if rates[name]["readings_per_s"]:
            rates[f"ours_vs_{name}"] = round(ours / rates[name]["readings_per_s"], 2)
    return rates


def drain_ours(stack, backlog):
    """Starts our bridge on a backlog queued while it was stopped; its drain rate, storing every reading."""
    watch = StorageWatch(stack)
    stack.start_bridge()
    started = time.time()  # the bridge is connected: it drains from here
    before = stack.meter.start_interval()
    stored = watch.wait_for(backlog * VALUES_PER_READING) // VALUES_PER_READING
    # From connecting to the last stored row, seen by polling every 0.1 s.
    elapsed = max(watch.last_change - started, 0.1)
    return {"drained": stored, "readings_per_s": round(stored / elapsed), "resources": resources(stack, before, elapsed)}


def scenario_alarms(stack, backlog, rounds):
    """The ceiling of our bridge without alarm rules and with a threshold rule on every device,
    alternated `rounds` times in one run; the rules are never met, so this is evaluation's cost.
    Each round starts once the rollup job has rolled up the round before: it runs in the
    bridge's process, and recomputing those minutes during a drain of a few seconds would be measured as the round's."""
    rates = {"rules": stack.devices, "none": [], "rules_on_every_device": [],
             "bridge_cpu_percent": {"none": [], "rules_on_every_device": []}}
    for round_number in range(rounds):
        for name, rules in (("none", ["--remove"]), ("rules_on_every_device", ["--devices", str(stack.devices)])):
            waited = stack.wait_rolled_up()
            log(f"alarms: round {round_number + 1}, {name} (rollups done after {waited} s): queueing {backlog:,} "
                "readings, then our bridge drains them")
            stack.stop_bridge()
            stack.run_python("-m", "bench.alarm_rules", *rules)
            for process in publishers(stack, 20_000, backlog / 20_000, stack.devices):
                finish(process, 300)
            drained = drain_ours(stack, backlog)
            rates[name].append(drained["readings_per_s"])
            rates["bridge_cpu_percent"][name].append(drained["resources"].get("bridge", {}).get("cpu_percent"))
    stack.run_python("-m", "bench.alarm_rules", "--remove")
    if all(rates["none"]):
        rates["with_vs_without"] = round(sum(rates["rules_on_every_device"]) / sum(rates["none"]), 2)
    return rates


def scenario_alarm_latency(stack, sizes):
    """From a triggering reading (or its for_seconds running out) to the alarm's row and its
    frame on a fleet socket, under load: bench.alarm_latency."""
    from bench.alarm_latency import measure, remove_rules, set_rules

    set_rules(stack, sizes["held"])
    before = stack.meter.start_interval()
    started = time.time()
    figures = measure(stack, **sizes, log=log)
    figures["resources"] = resources(stack, before, time.time() - started)
    remove_rules(stack)
    return figures


def settle_rollups(stack, sizes, name):
    """In a full run, waits for the rollup job to roll up what came before: it runs in the
    bridge's process, so its backlog would be measured as the next figures' (on a slow machine,
    16-45 s of it after the ceiling's 60,000 readings: the minute they end in is rolled up once
    it is over; on PostgreSQL 45-54 s after a 35% ingest). Returns the seconds it took, or None
    in a quick run."""
    if not sizes["settle_rollups"]:
        return None
    waited = stack.wait_rolled_up(timeout=1800)
    log(f"{name}: rollups done after {waited} s")
    return waited


def scenario_ingest(stack, rate, seconds, watchers=10):
    log(f"ingest: {rate:,} readings/s offered for {seconds} s, {watchers} dashboards on one device each")
    clients, _ = dashboards(stack, watchers, "device", seconds + 8, devices=stack.devices)
    watch = StorageWatch(stack)
    before = stack.meter.start_interval()
    started = time.time()
    published = sum(finish(process, seconds + 120)["published"] for process in publishers(stack, rate, seconds, stack.devices))
    stored = watch.wait_for(published * VALUES_PER_READING) // VALUES_PER_READING
    elapsed = watch.last_change - started
    delivered, latency = merged(finish(process, 60) for process in clients)
    return {
        "offered_per_s": rate, "seconds": seconds, "published": published, "stored": stored,
        "lost": published - stored, "stored_per_s": round(stored / elapsed) if elapsed > 0 else None,
        "publish_to_stored": watch.latency.summary(), "delivered": delivered,
        "delivered_per_s": round(delivered["readings"] / seconds), "publish_to_websocket": latency.summary(),
        "resources": resources(stack, before, time.time() - started), "drained_after_s": stack.wait_drained(),
    }


def scenario_ingest_rates(stack, sizes, results):
    """The ingest rates in turn, each once the rollup job has caught up."""
    figures = []
    for rate, seconds in ingest_rates(sizes, results):
        settle_rollups(stack, sizes, f"ingest {rate:,}/s")
        figures.append(scenario_ingest(stack, rate, seconds))
    return figures


def ingest_rates(sizes, results):
    """The fixed ingest rates, and RAW_SHARE of the raw ceiling when this run measured it."""
    rates = list(sizes["ingest"])
    raw = results.get("ceiling", {}).get("raw", {}).get("readings_per_s")
    if raw:
        rates.append((round(RAW_SHARE * raw), sizes["raw_share_seconds"]))
    return rates


def scenario_fanout(stack, sockets, seconds):
    rate = stack.devices  # every device at 1 Hz
    log(f"fanout: {stack.devices:,} devices at 1 Hz, {sockets} fleet dashboards, {seconds} s")
    clients, _ = dashboards(stack, sockets, "fleet", seconds + 5, devices=stack.devices, ramp=sockets / 20)
    before = stack.meter.start_interval()
    started = time.time()
    published = sum(finish(process, seconds + 120)["published"] for process in publishers(stack, rate, seconds, stack.devices))
    delivered, latency = merged(finish(process, 120) for process in clients)
    return {
        "devices": stack.devices, "sockets": sockets, "published": published, "delivered": delivered,
        "delivered_per_s": round(delivered["readings"] / seconds), "expected_per_s": rate * sockets,
        "publish_to_websocket": latency.summary(), "resources": resources(stack, before, time.time() - started),
    }


def scenario_page(stack, seconds):
    from bench.browser import measure_fleet_page

    log(f"page: the fleet page in chromium while {stack.devices:,} devices report every second, {seconds} s")
    load = []
    figures = measure_fleet_page(
        stack.url, stack.cookie, stack.devices, seconds,
        lambda: load.extend(publishers(stack, stack.devices, seconds + 2, stack.devices)),
    )
    figures["load"] = sum(finish(process, seconds + 120)["published"] for process in load)
    return figures


def scenario_idle(stack, sockets, seconds=10):
    log(f"idle: {sockets:,} idle dashboard sockets on one daphne")
    time.sleep(1)
    rss_before = stack.meter.rss.get("daphne", 0)
    clients, opening = dashboards(stack, sockets, "idle", seconds + 3)
    time.sleep(1.5)
    rss_after = stack.meter.rss.get("daphne", 0)
    before = stack.meter.start_interval()
    time.sleep(seconds)
    used = resources(stack, before, seconds)
    figures = connections(finish(process, 60) for process in clients)
    return {**figures, "kib_per_socket": round((rss_after - rss_before) / 1024 / opening["opened"], 1) if opening["opened"] else None,
            "daphne_idle_cpu_percent": used["daphne"]["cpu_percent"], "resources": used}


def scenario_soak(stack, minutes, rate=5_000):
    """Memory of every process at minute 2 (or a fifth of the way) and at the end, and how far
    the bridge is behind at both: memory that grows with a backlog is a queue, not a leak."""
    log(f"soak: {rate:,} readings/s for {minutes} min")
    stack.meter.start_interval()  # forgets the processes of earlier scenarios
    watch = StorageWatch(stack)
    started = time.time()
    processes = publishers(stack, rate, minutes * 60, stack.devices)
    early_at = min(120, minutes * 60 / 5)  # seconds
    time.sleep(early_at)
    early, behind_early = dict(stack.meter.rss), behind(stack, watch, rate, started)
    published = sum(finish(process, minutes * 60 + 120)["published"] for process in processes)
    late, behind_end = dict(stack.meter.rss), behind(stack, watch, rate, started, published)
    stored = watch.wait_for(published * VALUES_PER_READING) // VALUES_PER_READING
    memory = {name: {"rss_mib_early": round(early[name] / 2 ** 20, 1), "rss_mib_end": round(late[name] / 2 ** 20, 1),
                     "growth_percent": round(100 * (late[name] - early[name]) / early[name], 1)}
              for name in early if name in late}
    log(f"soak: readings published but not yet stored: about {behind_early:,} at minute "
        f"{early_at / 60:g}, {behind_end:,} at the end")
    return {"memory": memory, "published": published, "stored": stored, "lost": published - stored,
            "behind_early": behind_early, "behind_end": behind_end}


def behind(stack, watch, rate, started, published=None):
    """Readings published and not yet stored: `published`, or what the rate offered by now."""
    offered = published if published is not None else int(rate * (time.time() - started))
    return max(0, offered - (stack.stored_values() - watch.start_rows) // VALUES_PER_READING)


def machine():
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith("Model name")), "?")
    memory_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {"cpu": model, "cores": len(os.sched_getaffinity(0)),
            "memory_gib": round(memory_kib / 2 ** 20, 1), "python": platform.python_version()}


def report(results):
    rows = []
    ceiling = results.get("ceiling")
    if ceiling:
        for name in ("raw", "naive", "ours"):
            rows.append({"scenario": f"ceiling: {name}", "rate": ceiling[name]["readings_per_s"]})
    for item in results.get("ingest", []):
        rows.append({
            "scenario": f"ingest {item['offered_per_s']:,}/s", "rate": item["stored_per_s"], "lost": item["lost"],
            "delivered": item["delivered_per_s"], **{f"ws_{k}": v for k, v in item["publish_to_websocket"].items() if k != "samples"},
            "stored_p99": item["publish_to_stored"]["p99_ms"],
        })
    fanout = results.get("fanout")
    if fanout:
        rows.append({"scenario": f"fanout {fanout['sockets']} fleet sockets", "delivered": fanout["delivered_per_s"],
                     **{f"ws_{k}": v for k, v in fanout["publish_to_websocket"].items() if k != "samples"},
                     "dropped": fanout["delivered"]["dropped"]})
    print(table(rows, [("scenario", "scenario"), ("rate", "stored/s"), ("lost", "lost"), ("delivered", "delivered/s"),
                       ("ws_p50_ms", "ws p50"), ("ws_p95_ms", "ws p95"), ("ws_p99_ms", "ws p99"), ("ws_max_ms", "ws max"),
                       ("stored_p99", "stored p99"), ("dropped", "dropped")]))
    if ceiling:
        print(f"ours / raw ceiling: {ceiling.get('ours_vs_raw')}   ours / naive bridge: {ceiling.get('ours_vs_naive')}")
        naive = ceiling["naive"]
        print(f"naive bridge: {naive.get('delivered', 0):,} of the {naive['drained']:,} readings it drained reached its dashboards")
    if "alarms" in results:
        alarms = results["alarms"]
        cpu = alarms["bridge_cpu_percent"]
        print(f"alarms: ours without rules {alarms['none']} readings/s (bridge at {cpu['none']}% of a core), with "
              f"{alarms['rules']:,} threshold rules {alarms['rules_on_every_device']} ({cpu['rules_on_every_device']}%): "
              f"{alarms.get('with_vs_without')} of it")
    if "alarm_latency" in results:
        latency = results["alarm_latency"]
        print(f"alarm latency: {latency['rules']:,} rules, {latency['triggers']} alarms raised by a reading and "
              f"{latency['held']} by for_seconds={latency['for_seconds']} running out, {latency['load_per_s']:,} "
              f"readings/s of load beside (the row seen by polling every {latency['row_poll_ms']:g} ms):")
        measured_rows = [{"scenario": name, **latency[name]}
                         for name in ("reading_to_stored", "reading_to_row", "reading_to_frame", "for_seconds_to_row",
                                      "for_seconds_to_frame")]
        print(table(measured_rows, [("scenario", "from, to"), ("samples", "alarms"), ("missing", "missing"), ("p50_ms", "p50 ms"),
                           ("p95_ms", "p95 ms"), ("p99_ms", "p99 ms"), ("max_ms", "max ms")]))
    if "page" in results:
        page = results["page"]
        print(f"fleet page: {page['rows']:,} rows updating every second, {page['frames_per_s']} frames/s, "
              f"frame interval p50 {page['frame_interval_p50_ms']} ms, p99 {page['frame_interval_p99_ms']} ms, "
              f"{page['long_tasks']} long tasks")
    for item in results.get("ingest", []):
        print(f"ingest {item['offered_per_s']:,}/s dashboards: {describe_connections(item['delivered'])}; "
              f"the bridge drained {item['drained_after_s']} s after it")
    if fanout:
        print(f"fanout dashboards: {describe_connections(fanout['delivered'])}")
    if "idle" in results:
        idle = results["idle"]
        per_socket = f"{idle['kib_per_socket']} KiB each" if idle["kib_per_socket"] is not None else "no socket open to measure"
        if idle["kib_per_socket"] is not None and idle["connect_attempts_refused"]:
            per_socket += " (daphne's growth counts the refused attempts too)"
        print(f"idle: {describe_connections(idle)}, {per_socket}, daphne at {idle['daphne_idle_cpu_percent']}% CPU")
    if "drained_after_s" in results:
        print("the bridge drained, after each scenario: "
              + ", ".join(f"{name} {seconds} s" for name, seconds in results["drained_after_s"].items()))
    print("\nCPU (% of one core) and peak memory, the hub's processes against the load's:")
    for label, used in measured(results):
        print(f"{label}: {describe_resources(used)}")
    if "soak" in results:
        soak = results["soak"]
        print("soak: " + ", ".join(f"{name} {v['rss_mib_early']}→{v['rss_mib_end']} MiB ({v['growth_percent']}%)" for name, v in soak["memory"].items()))
        print(f"soak: {soak['stored']:,} of {soak['published']:,} readings stored, {soak['lost']:,} lost; "
              f"behind by about {soak['behind_early']:,} early and {soak['behind_end']:,} at the end")


def measured(results):
    """(label, resources) of every scenario that metered its processes."""
    ceiling = results.get("ceiling", {})
    for name in ("naive", "ours"):
        if "resources" in ceiling.get(name, {}):
            yield f"ceiling: {name}", ceiling[name]["resources"]
    for item in results.get("ingest", []):
        yield f"ingest {item['offered_per_s']:,}/s", item["resources"]
    for name in ("fanout", "idle", "alarm_latency"):
        if name in results:
            yield name, results[name]["resources"]


def describe_resources(used):
    groups = {"hub": {}, "load": {}}
    for name, figures in used.items():
        groups["load" if name.startswith(LOAD_PROCESSES) else "hub"][name] = figures
    return "; ".join(
        f"{group} {sum(f['cpu_percent'] for f in members.values()):.1f}% ("
        + ", ".join(f"{name} {f['cpu_percent']}%, {f['peak_rss_mib']} MiB" for name, f in members.items()) + ")"
        for group, members in groups.items() if members
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="seconds and small counts, to check the suite works")
    parser.add_argument("--only", default="ceiling,ingest,fanout,page,idle", help="comma-separated scenarios")
    parser.add_argument("--soak", type=float, default=0, help="also soak for this many minutes")
    parser.add_argument("--layer", choices=["pubsub", "core"], default="pubsub", help="channels-redis layer")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite",
                        help="the hub's database: SQLite, or a throwaway PostgreSQL cluster (Debian's postgresql)")
    parser.add_argument("--batch-window-ms", type=int, default=None, help="the bridge's HUB_BATCH_WINDOW_MS")
    parser.add_argument("--bridges", type=int, default=1,
                        help="bridge processes, sharing the broker's load through the shared subscription group")
    parser.add_argument("--alarm-load", type=int, default=None,
                        help="alarm_latency's background load, readings/s (default 2,000; --quick: 200)")
    parser.add_argument("--out", default="var/bench/results.json")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    scenarios = set(args.only.split(","))
    command = "python -m bench.run " + shlex.join(sys.argv[1:])
    results = {"command": command, "machine": machine(), "layer": args.layer, "database": args.database,
               "bridges": args.bridges, "quick": args.quick}
    log(f"{command} on {results['machine']['cpu']}, {results['machine']['cores']} cores")
    runs = {
        "ceiling": lambda stack: scenario_ceiling(stack, sizes["backlog"], sizes["naive_seconds"]),
        "ingest": lambda stack: scenario_ingest_rates(stack, sizes, results),
        "fanout": lambda stack: scenario_fanout(stack, *sizes["fanout"]),
        "page": lambda stack: scenario_page(stack, sizes["page_seconds"]),
        "idle": lambda stack: scenario_idle(stack, sizes["idle_sockets"]),
        "soak": lambda stack: scenario_soak(stack, args.soak),
        "alarms": lambda stack: scenario_alarms(stack, sizes["backlog"], sizes["alarm_rounds"]),
        "alarm_latency": lambda stack: scenario_alarm_latency(
            stack, {**sizes["alarm_latency"], **({"load": args.alarm_load} if args.alarm_load else {})}),
    }
    if args.soak:
        scenarios.add("soak")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    failed = []
    with tempfile.TemporaryDirectory(prefix="telehub-bench-") as workdir:
        stack = Stack(workdir, devices=sizes["fleet_devices"], channel_layer=args.layer,
                      batch_window_ms=args.batch_window_ms, database=args.database, log=log)
        stack.add_bridges(args.bridges - 1)
        try:
            stack.start()
            for name, run in runs.items():
                if name not in scenarios:
                    continue
                try:
                    settle_rollups(stack, sizes, name)
                    results[name] = run(stack)
                    results.setdefault("drained_after_s", {})[name] = drained = stack.wait_drained()
                    log(f"{name}: the bridge drained {drained} s after the scenario ended")
                except Exception as error:  # one broken scenario must not lose the others' figures
                    log(f"{name} failed: {error}")
                    failed.append(name)
                out.write_text(json.dumps(results, indent=2))
        finally:
            stack.stop()
    print()
    report(results)
    print(f"\nfigures: {out}\ncommand: {command}")
    if failed:
        sys.exit(f"failed scenarios: {', '.join(failed)}")


if __name__ == "__main__":
    main()
