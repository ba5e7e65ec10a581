"""Parts of the test run in pytests of their own, beside the main one: the SQLite tests of the
shards after the first, and the tests marked `postgres` again, in shards too, each on a throwaway
PostgreSQL server (tests/shards.py). Each starts as soon as the main run has collected its tests
(tests/conftest.py), so that it runs beside the main run instead of after it, and a test of the
main run waits for it and checks its result (tests/test_postgres.py, tests/test_shards.py). Most
of every run is waiting on the hub's processes, so together they take little longer than the
longest of them."""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from tests import shards
from tests.servers import ROOT, PostgresServer

POSTGRES_TEST = "tests/test_postgres.py::test_the_tests_marked_postgres_pass_on_postgresql[{}]"
SHARD_TEST = "tests/test_shards.py::test_the_tests_of_the_shard_pass[{}]"
WAITING_TESTS = {
    *(POSTGRES_TEST.format(number) for number in range(1, shards.POSTGRES_COUNT + 1)),
    *(SHARD_TEST.format(number) for number in range(2, shards.COUNT + 1)),
}
# Set in each pass's own environment: a pass never starts another.
INSIDE = "TELEHUB_SIDE_PASS"
# Longer than any pass takes on a slow machine, so that a hung one still ends the run.
TIMEOUT = 1800


def inside():
    return os.environ.get(INSIDE) == "1"


class SidePass:
    """A pytest of its own on some test files, in a temporary directory, its output in a file.
    It is given files and the main run's -k and -m, not node ids: a parametrized test's id may
    differ from one collection to the next (a uuid in its parameters)."""

    options = ()

    def __init__(self, name, files, selection, report):
        """`selection`: the options that select its tests in `files`; `report`: the main run's
        --junitxml, if any: this pass writes its own beside it."""
        self.name = name
        self.arguments = [*selection, *([f"--junitxml={report}.{name}.xml"] if report else []), *sorted(files)]
        self.workdir = Path(tempfile.mkdtemp(prefix=f"telehub-{name}-pass-"))
        self.output = self.workdir / "pytest.log"
        self.process = None

    def start(self, env=None):
        """Starts pytest, with the environment variables `env` besides this process's."""
        with open(self.output, "wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                 "--basetemp", str(self.workdir / "pytest"), *self.options, *self.arguments],
                cwd=ROOT, env={**os.environ, **(env or {}), INSIDE: "1"}, stdout=output, stderr=subprocess.STDOUT,
            )

    def check(self):
        """Waits for the run to end; unless all its tests passed, fails with the names of those
        that failed and the end of its output (their tracebacks)."""
        self.process.wait(TIMEOUT)
        output = self.output.read_text(errors="replace")
        failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", output, re.MULTILINE)
        assert self.process.returncode == 0, (
            f"{', '.join(failed) or 'the run'} failed in the {self.name} pass (its files: {self.workdir}):\n"
            f"{output[-11000:]}"
        )
        assert " passed" in output

    def stop(self):
        """Ends the run if it still runs (the main run ended first: -x, Ctrl-C), as Ctrl-C does,
        so that it stops the servers it started; removes its files unless it failed."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is None or self.process.returncode == 0:
            shutil.rmtree(self.workdir, ignore_errors=True)


class PostgresPass(SidePass):
    """Tests marked `postgres`, on a PostgreSQL server of their own."""

    # --reuse-db keeps the test database, so the test can see the run used this server.
    options = ("--reuse-db",)

    def __init__(self, name, files, selection, report):
        super().__init__(name, files, selection, report)
        self.server = PostgresServer(tmpdir=self.workdir)

    def start(self):
        self.server.start()
        super().start({"HUB_DATABASE_URL": self.server.url})

    def stop(self):
        super().stop()
        self.server.remove()


_started = {}


def start(config, items):
    """Starts the passes whose waiting test is among the collected `items`, never from inside a
    pass; leaves in `items` the tests of the main run, the waiting tests last."""
    if inside():
        raise RuntimeError("a side pass does not start another")
    waiting = [item for item in items if item.nodeid in WAITING_TESTS]
    waiting_ids = {item.nodeid for item in waiting}
    tests = [item for item in items if item not in waiting]
    keyword, markers, report = config.option.keyword, config.option.markexpr, config.option.xmlpath
    keyword_option = ["-k", keyword] if keyword else []
    shard_of = shards.assign({item.path: shards.seconds(item.path) for item in tests}, shards.COUNT)
    for number in range(2, shards.COUNT + 1):
        files = {str(path.relative_to(ROOT)) for path, shard in shard_of.items() if shard == number}
        if files and SHARD_TEST.format(number) in waiting_ids:
            selection = [*keyword_option, *(["-m", markers] if markers else [])]
            _start(SidePass(f"shard-{number}", files, selection, report))
    marked = {item.path for item in tests if item.get_closest_marker("postgres")}
    postgres_shard_of = shards.assign({path: shards.seconds(path, shards.POSTGRES_SECONDS) for path in marked},
                                      shards.POSTGRES_COUNT)
    for number in range(1, shards.POSTGRES_COUNT + 1):
        files = {str(path.relative_to(ROOT)) for path, shard in postgres_shard_of.items() if shard == number}
        if files and POSTGRES_TEST.format(number) in waiting_ids:
            selection = [*keyword_option, "-m", f"postgres and ({markers})" if markers else "postgres"]
            _start(PostgresPass(f"postgres-{number}", files, selection, report))
    # A shard of SQLite tests that no test of this run waits for runs here.
    items[:] = [item for item in tests if f"shard-{shard_of[item.path]}" not in _started] + waiting


def _start(run):
    _started[run.name] = run
    run.start()


def started(name):
    """The pass of this name this session started, or None."""
    return _started.get(name)


def stop():
    for run in _started.values():
        run.stop()
