import pytest
from django.contrib.auth import get_user_model

from devices.credentials import issue_device_token
from devices.models import Device
from tests import side_passes
from tests.live import unique_id
from tests.servers import MosquittoServer, RedisServer

PASSWORD = "s3cret-pass!"


@pytest.fixture(scope="session")
def django_db_modify_db_settings(tmp_path_factory):
    """On SQLite the test database is a file, so the hub's own processes (bridge, daphne) can
    share it. (On PostgreSQL, tests/test_storage_postgres.py, it is Django's test_<name>.)"""
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        path = tmp_path_factory.mktemp("db") / "telehub-test.sqlite3"
        settings.DATABASES["default"]["TEST"]["NAME"] = str(path)


@pytest.fixture(scope="session", autouse=True)
def flush_retried_on_deadlock():
    """A transactional test's teardown empties every table with one TRUNCATE, while the hub a
    module keeps running may be storing: on PostgreSQL the two can deadlock (each holding a table
    the other waits for), and PostgreSQL aborts the TRUNCATE. The teardown tries it again, as the
    bridge retries its flush."""
    from django.core.management.base import CommandError
    from django.test import TransactionTestCase

    teardown = TransactionTestCase._fixture_teardown

    def retried(test_case):
        for attempt in range(1, 6):
            try:
                return teardown(test_case)
            except CommandError as error:
                if attempt == 5 or "deadlock detected" not in str(error.__cause__):
                    raise

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TransactionTestCase, "_fixture_teardown", retried)
        yield


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    """A new in-memory channel layer for each test: messages one test leaves behind (commands
    for the bridge's channel, say) must not reach the next."""
    from channels.layers import channel_layers

    channel_layers.backends.clear()


@pytest.fixture(autouse=True)
def fresh_recent_marks(monkeypatch):
    """Forgets the rollup marks earlier tests' flushes wrote (telemetry.rollups.RecentMarks): the
    database they were written to is emptied between tests, and a bridge's never is."""
    from telemetry import rollups

    monkeypatch.setattr(rollups, "recent_marks", rollups.RecentMarks())


@pytest.fixture
def make_user(transactional_db):
    def make(username, password=PASSWORD, **fields):
        return get_user_model().objects.create_user(username=username, password=password, **fields)

    return make


@pytest.fixture
def make_device(transactional_db):
    def make(device_id, owner, **fields):
        """A registered device; its MQTT password is in `mqtt_password` (the hub keeps only a hash)."""
        device = Device.objects.create(id=device_id, owner=owner, name=fields.pop("name", device_id), **fields)
        device.mqtt_password = issue_device_token(device)
        return device

    return make


@pytest.fixture
def owner(make_user):
    """A user of a name no other test uses (a hub's processes can outlive one test's data)."""
    return make_user(unique_id("owner"))


@pytest.fixture
def device(make_device, owner):
    return make_device(unique_id("sensor"), owner)


def running(server):
    """Starts `server` for as long as the generator lives. It is stopped also when it fails to
    start (a hub whose bridge is slow to connect on a busy machine) or when what uses it fails:
    its processes must not outlive the test run."""
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    yield from running(RedisServer(tmpdir=tmp_path_factory.mktemp("redis")))


@pytest.fixture(scope="session")
def mosquitto_server(tmp_path_factory):
    yield from running(MosquittoServer(tmpdir=tmp_path_factory.mktemp("mosquitto")))


def running_hub(redis_server, mosquitto_server, workdir, **settings):
    """The bridge and daphne on the test database, the servers given, and these HUB_* settings."""
    from django.conf import settings as django_settings

    from tests.live import LiveHub

    yield from running(
        LiveHub(django_settings.DATABASES["default"], redis_server.url, mosquitto_server, workdir, **settings)
    )


@pytest.fixture(scope="module")
def live_hub(django_db_setup, redis_server, mosquitto_server, tmp_path_factory):
    """The hub, with a small payload limit to test against."""
    yield from running_hub(redis_server, mosquitto_server, tmp_path_factory.mktemp("hub"), max_payload_bytes=4096)


@pytest.hookimpl(trylast=True)  # after -m and -k have deselected
def pytest_collection_modifyitems(config, items):
    """Starts the side passes this session runs now, so they run beside the rest, handing them
    their tests, and moves the tests that wait for them last."""
    if not config.option.collectonly and not side_passes.inside():
        side_passes.start(config, items)


def pytest_sessionfinish():
    side_passes.stop()
