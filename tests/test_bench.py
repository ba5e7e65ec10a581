"""The benchmark suite's quick mode, so the suite cannot rot. It asserts what the run did,
never how fast: figures belong to `python -m bench.run`, not to tests."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

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
    assert figures["fanout"]["delivered"]["readings"] > 0 and figures["fanout"]["delivered"]["failed_sockets"] == 0
    assert figures["page"]["rows"] == 50 and figures["page"]["frames_per_s"] > 0
    assert figures["idle"]["sockets"] == 50 and figures["idle"]["kib_per_socket"] is not None
    assert {"bridge", "daphne", "redis", "mosquitto"} <= set(figures["ingest"][0]["resources"])
