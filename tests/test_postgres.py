"""The tests marked `postgres` again, on PostgreSQL, what docker-compose deploys: in pytests of
their own (tests/shards.py), each against a throwaway PostgreSQL server. SQLite serialises
writers and takes values PostgreSQL refuses (NUL in text, say), so whatever stores, claims or
counts is marked. The hub's other tests run on SQLite only."""
import psycopg
import pytest

from tests import shards, side_passes

pytestmark = pytest.mark.live


@pytest.mark.parametrize("number", range(1, shards.POSTGRES_COUNT + 1))
def test_the_tests_marked_postgres_pass_on_postgresql(number):
    run = side_passes.started(f"postgres-{number}")  # when the session collected this test
    if run is None:
        pytest.skip("this run selected no test marked postgres of this shard")
    run.check()
    with psycopg.connect(run.server.database_url("test_telehub")) as connection:
        tables = {name for (name,) in connection.execute("SELECT tablename FROM pg_tables")}
    assert {"telemetry_reading", "telemetry_latestvalue"} <= tables
