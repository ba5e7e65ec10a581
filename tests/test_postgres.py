"""The tests marked `postgres` again, on PostgreSQL, what docker-compose deploys: in a pytest of
its own, against a throwaway PostgreSQL server. SQLite serialises writers and takes values
PostgreSQL refuses (NUL in text, say), so whatever stores, claims or counts is marked. The hub's
other tests run on SQLite only."""
import psycopg
import pytest

from tests import side_passes

pytestmark = pytest.mark.live


def test_the_tests_marked_postgres_pass_on_postgresql():
    run = side_passes.started("postgres")  # when the session collected this test
    run.check()
    with psycopg.connect(run.server.database_url("test_telehub")) as connection:
        tables = {name for (name,) in connection.execute("SELECT tablename FROM pg_tables")}
    assert {"telemetry_reading", "telemetry_latestvalue"} <= tables
