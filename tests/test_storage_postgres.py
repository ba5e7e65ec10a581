"""Storage on PostgreSQL, what docker-compose deploys: tests/test_storage.py again, in a pytest
of its own, against a throwaway PostgreSQL server. The hub's other tests run on SQLite."""
import os
import subprocess
import sys

import psycopg
import pytest

from tests.servers import ROOT, PostgresServer

pytestmark = pytest.mark.live


@pytest.fixture
def postgres_server(tmp_path):
    server = PostgresServer(tmpdir=tmp_path)
    server.start()
    yield server
    server.remove()


def test_the_storage_tests_pass_on_postgresql(postgres_server):
    result = subprocess.run(
        # --reuse-db keeps the test database, so the test can see the run used this server.
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--reuse-db", "tests/test_storage.py"],
        cwd=ROOT, env={**os.environ, "HUB_DATABASE_URL": postgres_server.url}, capture_output=True, text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    assert " passed" in result.stdout
    with psycopg.connect(postgres_server.database_url("test_telehub")) as connection:
        tables = {name for (name,) in connection.execute("SELECT tablename FROM pg_tables")}
    assert {"telemetry_reading", "telemetry_latestvalue"} <= tables
