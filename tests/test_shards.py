"""The SQLite tests of the shards after the first (tests/shards.py), each in a pytest of its own
beside the main run, which runs the first."""
import pytest

from tests import shards, side_passes

pytestmark = pytest.mark.live


@pytest.mark.parametrize("number", range(2, shards.COUNT + 1))
def test_the_tests_of_the_shard_pass(number):
    run = side_passes.started(f"shard-{number}")  # when the session collected this test
    if run is None:
        pytest.skip("this run selected no test of the shard: the main run ran them")
    run.check()
