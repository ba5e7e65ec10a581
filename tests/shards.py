"""The SQLite tests in shards of about equal time, by file: the first runs in the main run, the
others in passes of their own beside it (tests/side_passes.py). A file's tests stay together, so
a hub a module shares is started once.

The times are a full run's (`scripts/test --junitxml=...`, each file's tests summed, setup and
teardown included), rounded; a file not listed counts as NEW_FILE seconds. Only the balance
depends on them: update them when a file grows or shrinks a lot."""
COUNT = 2
NEW_FILE = 5
SECONDS = {
}


def assign(paths):
    """Each test file's shard, 1 to COUNT: the longest files first, each to the shard with the
    least time so far (ties by name, so every run splits alike)."""
    totals = [0] * COUNT
    shard_of = {}
    for path in sorted(paths, key=lambda path: (-SECONDS.get(path.name, NEW_FILE), path.name)):
        shard = min(range(COUNT), key=lambda number: totals[number])
        totals[shard] += SECONDS.get(path.name, NEW_FILE)
        shard_of[path] = shard + 1
    return shard_of
