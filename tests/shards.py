"""The tests in shards of about equal time, by file: the SQLite tests in COUNT shards, the first
in the main run, the others in passes of their own beside it, and the tests marked postgres in
POSTGRES_COUNT passes on PostgreSQL (tests/side_passes.py). A file's tests stay together, so a
hub a module shares is started once.

The times are a full run's, each file's tests summed, setup and teardown included; a file not
listed counts as NEW_FILE seconds. Only the balance depends on them: when files have grown or
shrunk a lot, print the tables anew from a run's reports (each pass writes one beside the main
run's):
    scripts/test --junitxml=/tmp/times.xml
    .venv/bin/python -m tests.shards /tmp/times.xml"""
import glob
import sys
from collections import Counter
from xml.etree import ElementTree

COUNT = 3
POSTGRES_COUNT = 2  # the tests marked postgres, on PostgreSQL, in shards of their own
NEW_FILE = 5
SECONDS = {
}
POSTGRES_SECONDS = {
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
