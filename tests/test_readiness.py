"""/readyz over a real daphne: ready while the database and Redis answer, 503 naming what does
not, and never hanging on a server that accepts and stays silent. /healthz stays up meanwhile."""
import socket
import urllib.error
import urllib.request

import orjson
import pytest

from tests.conftest import running, running_hub
from tests.live import TIMEOUT, wait_until
from tests.servers import RedisServer, free_port

pytestmark = [pytest.mark.live, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    """A Redis of this module's own: the tests stop it."""
    yield from running(RedisServer(tmp_path_factory.mktemp("readiness-redis")))


@pytest.fixture(scope="module")
def hub(django_db_setup, redis, mosquitto_server, tmp_path_factory):
    yield from running_hub(redis, mosquitto_server, tmp_path_factory.mktemp("readiness-hub"))


def get_json(url):
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, orjson.loads(error.read())


def test_ready_while_the_database_and_redis_answer_and_not_while_redis_is_stopped(hub, redis):
    assert get_json(hub.url + "readyz") == (200, {"ok": True, "checks": {"database": "ok", "redis": "ok"}})
    redis.stop()
    try:
        status, body = get_json(hub.url + "readyz")
        assert status == 503 and body["ok"] is False
        assert body["checks"]["database"] == "ok" and body["checks"]["redis"].startswith("failed")
        assert get_json(hub.url + "healthz") == (200, {"ok": True})
    finally:
        redis.start()
    wait_until(lambda: get_json(hub.url + "readyz")[0] == 200, message="ready again once Redis is back")


def test_a_database_that_refuses_connections_is_named(hub):
    web, url = hub.another_web("no-database", HUB_DATABASE_URL=f"postgres://telehub@127.0.0.1:{free_port()}/telehub")
    try:
        status, body = get_json(url + "readyz")
        assert status == 503 and body["checks"]["database"].startswith("failed") and body["checks"]["redis"] == "ok"
    finally:
        web.stop()


@pytest.fixture
def silent_server():
    """A port where connections complete and nothing is ever answered."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as server:
        yield server.getsockname()[1]


def test_a_redis_that_accepts_and_never_answers_does_not_hang_the_check(hub, silent_server):
    web, url = hub.another_web("silent-redis", HUB_REDIS_URL=f"redis://127.0.0.1:{silent_server}/0")
    try:
        status, body = get_json(url + "readyz")  # within TIMEOUT, or urlopen fails the test
        assert status == 503 and body["checks"]["redis"].startswith("no answer within")
    finally:
        web.stop(timeout=30)


def test_a_database_that_accepts_and_never_answers_does_not_hang_the_checks(hub, silent_server):
    web, url = hub.another_web("silent-database", HUB_DATABASE_URL=f"postgres://telehub@127.0.0.1:{silent_server}/x")
    try:
        # The first check's connection still hangs while the next ones are asked: each answers
        # anyway, until the connection gives up (then the next check tries afresh).
        answers = [get_json(url + "readyz") for _ in range(3)]
        assert all(status == 503 and body["checks"]["redis"] == "ok" for status, body in answers)
        assert answers[0][1]["checks"]["database"] == "no answer within 2 s"
        assert all(body["checks"]["database"] != "ok" for _, body in answers)
        assert get_json(url + "healthz") == (200, {"ok": True})
    finally:
        web.stop(timeout=30)
