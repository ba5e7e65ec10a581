"""The benchmark suite's quick mode, so the suite cannot rot. It asserts what the run did,
never how fast: figures belong to `python -m bench.run`, not to tests."""
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from bench.stack import Stack

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "results.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(out.read_text()), result.stdout


def test_the_stack_runs_the_hub_as_production_does_even_from_a_shell_in_debug_mode(monkeypatch, tmp_path):
    monkeypatch.setenv("HUB_DEBUG", "true")  # as the README's quick start exports it
    assert Stack(tmp_path, devices=[]).env["HUB_DEBUG"] == "false"


def test_benches_that_call_the_hub_in_process_run_django_out_of_debug_mode_too(tmp_path):
    code = ("from bench.in_process import setup_django; from django.conf import settings; "
            f"setup_django('sqlite:///{tmp_path / 'db.sqlite3'}'); print(settings.DEBUG)")
    env = {**os.environ, "HUB_DEBUG": "true"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_the_quick_run_prints_its_table_and_command(quick_run):
    figures, printed = quick_run
    assert "ceiling: ours" in printed and "ingest 500/s" in printed
    assert printed.rstrip().endswith("command: python -m bench.run --quick --out " + figures["command"].split("--out ")[1])


def test_every_reading_published_in_the_ingest_scenario_is_stored_exactly_once(quick_run):
    figures, _ = quick_run
    for ingest in figures["ingest"]:
        assert ingest["published"] > 0
        assert ingest["stored"] == ingest["published"] and ingest["lost"] == 0
        assert ingest["delivered"]["readings"] > 0 and ingest["publish_to_websocket"]["p50_ms"] is not None


def test_the_ingest_runs_at_its_share_of_the_raw_ceiling_and_each_scenario_waits_for_the_bridge_to_drain(quick_run):
    figures, printed = quick_run
    share = round(0.35 * figures["ceiling"]["raw"]["readings_per_s"])
    assert [ingest["offered_per_s"] for ingest in figures["ingest"]] == [500, share]
    assert all(ingest["drained_after_s"] >= 0 for ingest in figures["ingest"])
    assert set(figures["drained_after_s"]) == {"ceiling", "ingest", "fanout", "page", "idle"}
    assert "the bridge drained, after each scenario: ceiling" in printed


def test_the_ceiling_compares_our_bridge_with_the_raw_subscriber_and_the_naive_bridge(quick_run):
    ceiling = quick_run[0]["ceiling"]
    assert ceiling["raw"]["drained"] == ceiling["ours"]["drained"] == 3000
    assert {"ours_vs_raw", "ours_vs_naive"} <= set(ceiling)


def test_the_naive_bridge_feeds_dashboards_listening_in_its_groups(quick_run):
    naive = quick_run[0]["ceiling"]["naive"]
    assert 0 < naive["drained"] <= 3000
    # Each device's group has one dashboard: no reading reaches two.
    assert 0 < naive["delivered"] <= naive["drained"] and "naive-daphne" in naive["resources"]


def test_fleet_dashboards_receive_the_fleet_and_idle_sockets_are_measured(quick_run):
    figures, _ = quick_run
    fanout = figures["fanout"]["delivered"]
    assert fanout["readings"] > 0 and fanout["sockets"] == 5
    # Every socket either opened or failed; refused attempts were retried, not counted failed.
    assert fanout["opened"] + fanout["failed_sockets"] == 5 and fanout["connect_attempts_refused"] >= 0
    assert figures["page"]["rows"] == 50 and figures["page"]["frames_per_s"] > 0
    idle = figures["idle"]
    assert idle["sockets"] == 50 and idle["opened"] + idle["failed_sockets"] == 50
    assert (idle["kib_per_socket"] is None) == (idle["opened"] == 0)
    assert idle["open_seconds"] > 0 and idle["connects_per_s"] == round(idle["opened"] / idle["open_seconds"])


def test_every_process_is_metered_the_hubs_and_the_loads(quick_run):
    figures, printed = quick_run
    ingest = figures["ingest"][0]["resources"]
    assert {"bridge", "daphne", "redis", "mosquitto", "publisher-0", "dashboards-0"} <= set(ingest)
    assert ingest["publisher-0"]["cpu_percent"] > 0 and ingest["publisher-0"]["peak_rss_mib"] > 0
    assert {"dashboards-0", "publisher-0"} <= set(figures["fanout"]["resources"])
    assert "dashboards-0" in figures["idle"]["resources"] and "dashboards-0" in figures["ceiling"]["naive"]["resources"]
    assert "fanout: hub " in printed and "; load " in printed
    assert "idle: " in printed and "of 50 sockets open after" in printed


def test_on_postgresql_with_two_bridges_every_reading_is_stored_once_and_every_process_is_metered(tmp_path):
    out = tmp_path / "postgres.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--only", "ceiling,ingest", "--database", "postgres",
         "--bridges", "2", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["database"] == "postgres"
    assert figures["ceiling"]["ours"]["drained"] == 3000 and 0 < figures["ceiling"]["naive"]["drained"] <= 3000
    ingest = figures["ingest"][0]
    assert ingest["published"] > 0 and ingest["stored"] == ingest["published"] and ingest["lost"] == 0
    # The server's connections are its child processes: their CPU is in its figure (the
    # postmaster alone stays near 0% while our bridge stores the backlog through one of them).
    assert figures["ceiling"]["ours"]["resources"]["postgres"]["cpu_percent"] >= 1
    # Both bridges ran, in the shared group, and were metered (how the broker splits a small
    # backlog between them is its own affair).
    assert figures["bridges"] == 2
    assert {"bridge", "bridge-1"} <= set(figures["ceiling"]["ours"]["resources"])


def run_store_cost(*options):
    result = subprocess.run(
        [sys.executable, "-m", "bench.store_cost", "--rounds", "2", "--seconds", "0.5", *options],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    *rounds, command = result.stdout.strip().splitlines()
    return [json.loads(line) for line in rounds], command


def test_store_cost_stores_flushes_of_the_size_asked_and_times_them():
    rounds, command = run_store_cost("--flush", "20")
    assert command == "command: python -m bench.store_cost --rounds 2 --seconds 0.5 --flush 20"
    assert [figures["round"] for figures in rounds] == [1, 2]
    assert all(figures["readings_per_flush"] == 20 for figures in rounds)
    assert rounds[1]["readings_stored"] > rounds[0]["readings_stored"] > 0 and rounds[1]["readings_stored"] % 20 == 0
    assert 0 < rounds[0]["flush_p50_ms"] <= rounds[0]["flush_p99_ms"] <= rounds[0]["flush_max_ms"]
    assert rounds[1]["database_mib"] > 0


def test_store_cost_at_a_fixed_rate_stores_what_falls_due():
    rounds, _ = run_store_cost("--rate", "400")
    # 400 a second for half a second, each round: never more than fell due (200), and not
    # much less: the round's last flush may come just before its end.
    stored = [figures["readings_stored"] for figures in rounds]
    for in_round in (stored[0], stored[1] - stored[0]):
        assert 100 <= in_round <= 200


def test_rollup_cost_rolls_up_every_minute_its_flushes_marked_after_a_fill():
    result = subprocess.run([sys.executable, "-m", "bench.rollup_cost", "--minutes", "1", "--fill", "20000"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures, command = result.stdout.strip().splitlines()
    figures = json.loads(figures)
    assert command == "command: python -m bench.rollup_cost --minutes 1 --fill 20000"
    assert figures["filled"] == 20000 and "20,000 of 20,000 values" in result.stderr
    # 1,000 devices of three keys, one minute: a mark each, and a minute and an hour row each.
    assert (figures["marks"], figures["minute_rows"], figures["hour_rows"], figures["marks_left"]) == (3000, 3000, 3000, 0)
    assert figures["minutes_per_s"] > 0


def test_the_outage_bench_meters_the_bridge_through_a_database_outage_and_checks_every_reading():
    result = subprocess.run(
        [sys.executable, "-m", "bench.outage", "--rate", "200", "--outage", "3", "--before", "2", "--after", "2",
         "--devices", "10", "--every", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    *_, command, last = result.stdout.strip().splitlines()
    figures = json.loads(last)
    assert command == "command: " + figures["command"]
    assert figures["published"] == 200 * 7 and figures["stored"] == figures["published"] and figures["exactly_once"]
    phases = [sample["phase"] for sample in figures["samples"]]
    assert phases[0] == "before" and "outage" in phases and phases[-1] == "after"
    # Nothing is stored while the database is away.
    assert len({sample["stored"] for sample in figures["samples"] if sample["phase"] == "outage"}) == 1
    assert figures["bridge_mib_max_during_outage"] > 0


def test_the_alarm_latency_bench_times_each_alarm_to_its_row_and_its_frame(tmp_path):
    out = tmp_path / "alarm_latency.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--only", "alarm_latency", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    latency = json.loads(out.read_text())["alarm_latency"]
    assert (latency["rules"], latency["triggers"], latency["held"]) == (53, 10, 3)
    assert latency["load_published"] > 0 and latency["resources"]["bridge"]["cpu_percent"] > 0
    assert "publisher-0" in latency["resources"]
    for name, alarms in (("reading_to_stored", 10), ("reading_to_row", 10), ("reading_to_frame", 10),
                         ("for_seconds_to_row", 3), ("for_seconds_to_frame", 3)):
        figures = latency[name]
        assert (figures["samples"], figures["missing"]) == (alarms, 0)
        assert 0 <= figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]
    assert "for_seconds_to_frame" in result.stdout
    assert result.stdout.rstrip().endswith(f"command: python -m bench.run --quick --only alarm_latency --out {out}")


def test_the_timeline_bench_prints_the_bridge_second_by_second():
    result = subprocess.run(
        [sys.executable, "-m", "bench.timeline", "--rate", "300", "--seconds", "3", "--warm", "0", "--bridges", "2",
         "--fill", "2000"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    rows = [[int(cell) for cell in line.replace(",", "").split()] for line in lines if re.fullmatch(r"[\d, ]+", line)]
    assert [row[0] for row in rows] == list(range(len(rows))) and len(rows) >= 3
    assert sum(row[3] for row in rows) > 0  # flushes
    assert "300 readings/s for 3 s, 900 stored, 0 lost; dashboards p50" in result.stdout
    assert re.search(r"the bridges at [\d.]+%, [\d.]+% of a core", result.stdout)  # both in the shared group
    assert re.search(r"filled 2,000 values in [\d.,]+ s, settled in [\d.]+ s", result.stdout)
    assert lines[-1] == "command: python -m bench.timeline --rate 300 --seconds 3 --warm 0 --bridges 2 --fill 2000"


def test_the_timeline_bench_counts_the_restarts_of_sqlites_log_whichever_connection_writes(tmp_path):
    """Not from the header's checkpoint sequence: each connection writes its own count there."""
    from bench.timeline import LogRestarts

    path = tmp_path / "db.sqlite3"
    with closing(sqlite3.connect(path, isolation_level=None)) as first, \
            closing(sqlite3.connect(path, isolation_level=None)) as second:
        first.execute("PRAGMA journal_mode=WAL")
        first.execute("CREATE TABLE t (x)")
        restarts = LogRestarts(path)
        first.execute("INSERT INTO t VALUES (1)")
        assert restarts() == 0
        for turn, writer in enumerate([first, second, first, second]):
            first.execute("PRAGMA wal_checkpoint(PASSIVE)")
            writer.execute("INSERT INTO t VALUES (2)")  # the first commit after a whole checkpoint starts the log over
            assert restarts() == turn + 1
    assert LogRestarts(tmp_path / "missing.sqlite3")() == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_timeline_bench_counts_postgresql_checkpoints():
    from django.db import connection

    from bench.timeline import postgres_checkpoints

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's own checkpoints")
    connection.ensure_connection()
    server = connection.connection  # psycopg's, in autocommit: each read sees fresh statistics
    before = postgres_checkpoints(server)
    server.execute("CHECKPOINT")
    # The checkpointer reports its statistics just after it wakes the backend that asked.
    deadline = time.monotonic() + 10
    while (counted := postgres_checkpoints(server)) == before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert counted == before + 1
