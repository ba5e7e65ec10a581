"""bench.growth and its bulk fill: the fill stores what the hub would have stored, and the quick
run measures every figure on the empty and the full database. Figures belong to
`python -m bench.growth`, not to tests."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import fill
from bench.prepare import device_ids
from telemetry.models import HourRollup, LatestValue, MinuteRollup, Reading
from telemetry.rollups import mark_touched
from tests.rollup_helpers import roll_up_everything

ROOT = Path(__file__).resolve().parent.parent
END = 1_764_000_000_123  # epoch ms, not on a minute
ROLLUP_COLUMNS = ("device_id", "key", "start", "min", "max", "sum", "count", "first", "last")


def rollups(model):
    return sorted(tuple(round(value, 9) if isinstance(value, float) else value for value in row)
                  for row in model.objects.values_list(*ROLLUP_COLUMNS))


@pytest.mark.postgres
def test_the_fill_stores_the_values_asked_with_the_latest_values_and_rollups_the_hub_would_keep(make_user, make_device):
    owner = make_user("owner")
    devices = device_ids(3)
    for device_id in devices:
        make_device(device_id, owner)
    figures = fill.fill(devices, 4_000, 2, END)

    assert figures["values"] == Reading.objects.count() == 4_000
    series = {(device, key): Reading.objects.filter(device_id=device, key=key) for device in devices for key in fill.KEYS}
    assert sorted(query.count() for query in series.values()) == [266] * 5 + [267] * 10
    assert all(END - 2 * 86_400_000 <= ts < END for ts in Reading.objects.values_list("ts", flat=True))
    latest = {(device, key): (ts, num) for device, key, ts, num in LatestValue.objects.values_list("device_id", "key", "ts", "num")}
    assert latest == {name: query.order_by("-ts").values_list("ts", "num")[0] for name, query in series.items()}

    # The hub's own rollup job, from the same raw rows, computes the same minutes and hours.
    filled = rollups(MinuteRollup), rollups(HourRollup)
    assert len(filled[0]) > 1000 and len(filled[1]) > 100
    MinuteRollup.objects.all().delete()
    HourRollup.objects.all().delete()
    mark_touched(list(Reading.objects.values_list("device_id", "key", "ts", "kind")))
    roll_up_everything()
    assert (rollups(MinuteRollup), rollups(HourRollup)) == filled


@pytest.mark.live
def test_the_quick_run_measures_every_figure_on_the_empty_and_the_full_database(tmp_path):
    out = tmp_path / "growth.json"
    result = subprocess.run([sys.executable, "-m", "bench.growth", "--quick", "--bridges", "2", "--out", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert result.stdout.rstrip().endswith(f"command: python -m bench.growth --quick --bridges 2 --out {out}")
    assert figures["command"] == f"python -m bench.growth --quick --bridges 2 --out {out}"
    # Both bridges in the shared group: the counts below are what the two stored between them.
    assert figures["bridges"] == 2 and "2 bridge(s)" in result.stdout
    assert figures["fill"]["values"] == 100_000 and figures["fill"]["values_per_s"] > 0
    assert figures["fill"]["settle_s"] >= 0 and "fill: settled in" in result.stdout
    assert "fill: 100,000 of 100,000 values (100.0%)" in result.stderr
    empty, full = figures["empty"], figures["full"]
    # The same rate offered to both, every reading stored.
    assert full["ingest"]["offered_per_s"] == empty["ingest"]["offered_per_s"] > 0
    for phase in (empty, full):
        assert phase["ceiling"]["stored"] == 2_000 and phase["ceiling"]["raw_readings_per_s"] > 0
        # Each ceiling and ingest measured twice in a quick run; the figure is one of the runs'.
        runs = phase["ceiling"]["runs"]
        assert len(runs) == 2 and all(run["stored"] == 2_000 for run in runs)
        assert phase["ceiling"]["readings_per_s"] in [run["readings_per_s"] for run in runs]
        assert len(phase["ingest"]["p99s_ms"]) == 2
        assert phase["ingest"]["publish_to_websocket"]["p99_ms"] in phase["ingest"]["p99s_ms"]
        assert phase["ingest"]["stored"] == phase["ingest"]["published"] > 0
        assert phase["ingest"]["publish_to_websocket"]["p99_ms"] is not None
        assert all(query["p95_ms"] is not None for query in phase["history"].values())
        assert phase["disk"]["bytes_per_value"] > 0
    # The history the fill wrote is what the full database's queries answer; the empty one has none.
    assert all(query["points_per_answer"] == 0 for query in empty["history"].values())
    assert all(query["points_per_answer"] > 0 for query in full["history"].values())
    assert full["disk"]["values"] >= empty["disk"]["values"] + 100_000
    # A third of the 3 days kept raw: the retention pass deletes about two thirds of the fill.
    assert empty["retention"]["deleted"]["raw"] == 0
    assert 60_000 <= full["retention"]["deleted"]["raw"] <= 70_000
    assert "history 365 d by day, p95 ms" in result.stdout and "drain ceiling" in result.stdout
    assert "full: medians of 2 runs; raw ceilings" in result.stdout
