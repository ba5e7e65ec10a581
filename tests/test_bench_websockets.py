"""The websocket benchmarks, briefly, so they cannot rot. They assert what a run did, never how
fast: figures belong to the runs docs/security.md quotes."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.live


def run(*args, timeout=300):
    result = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    *figures, command = result.stdout.strip().splitlines()
    return [json.loads(line) for line in figures], command


def test_recheck_cost_checks_every_socket_in_the_same_queries_each_round():
    rounds, command = run("bench.recheck_cost", "--sockets", "30", "--watch", "5", "--rounds", "2")
    assert command == "command: python -m bench.recheck_cost --sockets 30 --watch 5 --rounds 2"
    assert [(figures["round"], figures["signed_out"], figures["devices_allowed"]) for figures in rounds] == [(1, 0, 150), (2, 0, 150)]
    assert rounds[0]["queries"] == rounds[1]["queries"] <= 5


def test_ws_flood_closes_the_flooding_sockets_with_1008_and_meters_daphne():
    (figures,), command = run("bench.ws_flood", "--seconds", "2", "--devices", "100")
    assert command == "command: python -m bench.ws_flood --seconds 2 --devices 100"
    assert figures["frames_sent"] > 0 and figures["sockets_closed"].get("1008", 0) >= 1
    assert 0 < figures["daphne_rss_mib"]["before"] <= figures["daphne_rss_mib"]["peak"]
    assert figures["quiet_socket_got"]
