"""The tests marked `postgres` again, on PostgreSQL, what docker-compose deploys: in a pytest of
its own, against a throwaway PostgreSQL server. SQLite serialises writers and takes values
PostgreSQL refuses (NUL in text, say), so whatever stores, claims or counts is marked. The hub's
other tests run on SQLite only."""
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


def test_the_tests_marked_postgres_pass_on_postgresql(postgres_server):
    result = subprocess.run(
        # --reuse-db keeps the test database, so the test can see the run used this server.
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--reuse-db", "-m", "postgres", "tests/"],
        cwd=ROOT, env={**os.environ, "HUB_DATABASE_URL": postgres_server.url}, capture_output=True, text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-3000:]
    assert " passed" in result.stdout
    with psycopg.connect(postgres_server.database_url("test_telehub")) as connection:
        tables = {name for (name,) in connection.execute("SELECT tablename FROM pg_tables")}
    assert {"telemetry_reading", "telemetry_latestvalue"} <= tables
