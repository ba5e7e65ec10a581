"""The tests marked `postgres`, run again on a throwaway PostgreSQL server in a pytest of their
own. It starts as soon as the main run has collected its tests (tests/conftest.py), so that it
runs beside the SQLite tests instead of after them; tests/test_postgres.py waits for it and
checks its result. Most of either run is waiting on the hub's processes, so together they take
little longer than the longer of the two."""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.servers import ROOT, PostgresServer

TEST = "tests/test_postgres.py::test_the_tests_marked_postgres_pass_on_postgresql"
# Set in the pass's own environment: a pass never starts another.
INSIDE = "TELEHUB_POSTGRES_PASS"


def inside():
    return os.environ.get(INSIDE) == "1"


class PostgresPass:
    def __init__(self):
        self.workdir = Path(tempfile.mkdtemp(prefix="telehub-postgres-pass-"))
        self.server = PostgresServer(tmpdir=self.workdir)
        self.output = self.workdir / "pytest.log"
        self.process = None

    def start(self):
        self.server.start()
        with open(self.output, "wb") as output:
            self.process = subprocess.Popen(
                # --reuse-db keeps the test database, so the test can see the run used this server.
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--reuse-db", "-m", "postgres",
                 "--basetemp", str(self.workdir / "pytest"), "tests/"],
                cwd=ROOT, env={**os.environ, "HUB_DATABASE_URL": self.server.url, INSIDE: "1"},
                stdout=output, stderr=subprocess.STDOUT,
            )

    def wait(self, timeout):
        """The run's exit code and output, once it has ended."""
        self.process.wait(timeout)
        return self.process.returncode, self.output.read_text(errors="replace")

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.server.remove()


_started = None


def start():
    """Starts the run, once per session, never from inside one."""
    global _started
    if inside():
        raise RuntimeError("the PostgreSQL pass does not start another")
    if _started is None:
        _started = PostgresPass()
        _started.start()
    return _started


def stop():
    if _started is not None:
        _started.stop()
