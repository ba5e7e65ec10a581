"""The tests in shards of about equal time, by file: the SQLite tests in COUNT shards, the first
in the main run, the others in passes of their own beside it, and the tests marked postgres in
POSTGRES_COUNT passes on PostgreSQL (tests/side_passes.py). A file's tests stay together, so a
hub a module shares is started once.

The times are measured, each file's tests summed, setup and teardown included (on a loaded
machine: only their ratios matter); a file not listed counts as NEW_FILE seconds. Only the balance depends on them: when files have grown or
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
    "test_access.py": 5,
    "test_access_matrix.py": 148,
    "test_alarm_api.py": 7,
    "test_alarm_evaluation.py": 50,
    "test_alarm_live.py": 1,
    "test_alarm_notify.py": 104,
    "test_api.py": 346,
    "test_audit.py": 17,
    "test_bench_publisher.py": 35,
    "test_bridge_health.py": 133,
    "test_bridge_processes.py": 44,
    "test_bridges.py": 247,
    "test_broker_http.py": 120,
    "test_browser.py": 209,
    "test_command_live.py": 159,
    "test_command_requests.py": 269,
    "test_commands.py": 113,
    "test_consumers.py": 78,
    "test_core_layer_hub.py": 44,
    "test_credentials.py": 113,
    "test_device_trust.py": 61,
    "test_end_to_end.py": 109,
    "test_faults.py": 86,
    "test_mqtt_pause.py": 12,
}
POSTGRES_SECONDS = {
    "test_alarm_api.py": 79,
    "test_alarm_evaluation.py": 127,
    "test_alarm_live.py": 6,
    "test_alarm_notify.py": 284,
    "test_bridge_health.py": 156,
    "test_bridge_processes.py": 68,
    "test_bridges.py": 326,
    "test_broker_http.py": 68,
    "test_command_live.py": 62,
    "test_command_requests.py": 31,
    "test_commands.py": 56,
    "test_end_to_end.py": 79,
    "test_ingest_properties.py": 50,
    "test_leases.py": 4,
    "test_metrics.py": 22,
    "test_operator.py": 4,
    "test_peer_drain.py": 29,
    "test_poison.py": 91,
    "test_presence.py": 3,
    "test_readiness.py": 19,
    "test_recheck.py": 2,
    "test_rollups.py": 11,
    "test_socket_access.py": 36,
    "test_storage.py": 16,
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
