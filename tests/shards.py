"""The tests in shards of about equal time, by file: the SQLite tests in COUNT shards, the first
in the main run, the others in passes of their own beside it, and the tests marked postgres in
POSTGRES_COUNT passes on PostgreSQL (tests/side_passes.py). A file's tests stay together, so a
hub a module shares is started once.

The times are measured, each file's tests summed, setup and teardown included (on a loaded
machine: only their ratios matter; these from a full run on 2026-11-30, 898 s in all from a
clean clone); a file not listed counts as NEW_FILE seconds. Only the balance depends on them: when files have grown or
shrunk a lot, print the tables anew from a run's reports (each pass writes one beside the main
run's):
    scripts/test --junitxml=/tmp/times.xml
    .venv/bin/python -m tests.shards /tmp/times.xml"""
import glob
import sys
from collections import Counter
from xml.etree import ElementTree

COUNT = 2
POSTGRES_COUNT = 2  # the tests marked postgres, on PostgreSQL, in shards of their own
NEW_FILE = 5
SECONDS = {
    "test_access.py": 1,
    "test_access_matrix.py": 28,
    "test_admission.py": 2,
    "test_alarm_api.py": 3,
    "test_alarm_conditions.py": 0,
    "test_alarm_evaluation.py": 30,
    "test_alarm_live.py": 1,
    "test_alarm_notify.py": 70,
    "test_alarm_timed.py": 2,
    "test_api.py": 100,
    "test_audit.py": 3,
    "test_bench.py": 178,
    "test_bench_growth.py": 49,
    "test_bench_publisher.py": 18,
    "test_bench_websockets.py": 19,
    "test_bridge_health.py": 128,
    "test_bridge_processes.py": 16,
    "test_bridges.py": 95,
    "test_broker_http.py": 23,
    "test_browser.py": 46,
    "test_channel_layer.py": 6,
    "test_clock.py": 0,
    "test_command_live.py": 39,
    "test_command_requests.py": 22,
    "test_commands.py": 14,
    "test_compose.py": 0,
    "test_consumers.py": 8,
    "test_core_layer_hub.py": 11,
    "test_credentials.py": 11,
    "test_device_trust.py": 23,
    "test_end_to_end.py": 32,
    "test_faults.py": 126,
    "test_frames.py": 0,
    "test_ingest_properties.py": 37,
    "test_leases.py": 0,
    "test_limits.py": 0,
    "test_logs.py": 0,
    "test_metrics.py": 23,
    "test_mqtt_pause.py": 14,
    "test_operator.py": 4,
    "test_origins.py": 2,
    "test_outbox.py": 0,
    "test_pacing.py": 0,
    "test_pages.py": 4,
    "test_partitions.py": 1,
    "test_payloads.py": 0,
    "test_peer_drain.py": 24,
    "test_poison.py": 56,
    "test_presence.py": 1,
    "test_properties.py": 5,
    "test_protocol.py": 0,
    "test_readiness.py": 14,
    "test_reading_layout.py": 1,
    "test_recheck.py": 0,
    "test_rejects.py": 0,
    "test_replica.py": 5,
    "test_rollups.py": 4,
    "test_runhub.py": 3,
    "test_scale_out.py": 18,
    "test_sentinel.py": 12,
    "test_settings.py": 4,
    "test_signin_limits.py": 5,
    "test_snapshots.py": 1,
    "test_socket_access.py": 32,
    "test_socket_limits.py": 8,
    "test_storage.py": 8,
    "test_tally.py": 1,
    "test_tasks.py": 1,
    "test_tokens.py": 2,
}
POSTGRES_SECONDS = {
    "test_alarm_api.py": 9,
    "test_alarm_evaluation.py": 32,
    "test_alarm_live.py": 1,
    "test_alarm_notify.py": 55,
    "test_alarm_timed.py": 1,
    "test_bench_growth.py": 2,
    "test_bridge_health.py": 60,
    "test_bridge_processes.py": 13,
    "test_bridges.py": 104,
    "test_broker_http.py": 32,
    "test_command_live.py": 47,
    "test_command_requests.py": 36,
    "test_commands.py": 15,
    "test_end_to_end.py": 50,
    "test_ingest_properties.py": 40,
    "test_leases.py": 1,
    "test_metrics.py": 25,
    "test_operator.py": 1,
    "test_partitions.py": 3,
    "test_peer_drain.py": 24,
    "test_poison.py": 71,
    "test_presence.py": 2,
    "test_readiness.py": 16,
    "test_reading_layout.py": 1,
    "test_recheck.py": 1,
    "test_rollups.py": 6,
    "test_socket_access.py": 36,
    "test_storage.py": 18,
}


def seconds(path, table=SECONDS):
    return table.get(path.name, NEW_FILE)


def assign(weights, count):
    """Each file's shard, 1 to `count`, given each file's seconds: the longest files first, each
    to the shard with the least time so far (ties by name, so every run splits alike)."""
    totals = [0] * count
    shard_of = {}
    for path in sorted(weights, key=lambda path: (-weights[path], path.name)):
        shard = min(range(count), key=lambda number: totals[number])
        totals[shard] += weights[path]
        shard_of[path] = shard + 1
    return shard_of


def measured(junit_xml):
    """Each test file's seconds in a pytest --junitxml report."""
    seconds = Counter()
    for case in ElementTree.parse(junit_xml).iter("testcase"):
        if not case.get("classname"):  # an interrupted run's last entry
            continue
        module = next(part for part in case.get("classname").split(".") if part.startswith("test_"))
        seconds[f"{module}.py"] += float(case.get("time"))
    return seconds


if __name__ == "__main__":
    from tests.side_passes import WAITING_TESTS

    waiting_files = {test.split("::")[0].rsplit("/", 1)[1] for test in WAITING_TESTS}  # never in a shard
    main_report = sys.argv[1]
    for table, reports in [("SECONDS", [main_report, *glob.glob(f"{main_report}.shard-*.xml")]),
                           ("POSTGRES_SECONDS", glob.glob(f"{main_report}.postgres-*.xml"))]:
        print(f"{table} = {{")
        for name, total in sorted(sum(map(measured, reports), Counter()).items()):
            if name not in waiting_files:
                print(f'    "{name}": {round(total)},')
        print("}")
