"""Commands as they are asked for, over the API and in websocket frames: params the hub can
encode and a device can parse, the `timeout` beside `ttl`, and the Idempotency-Key header."""
import json
import threading
from datetime import timedelta

import orjson
import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from devices.commands import IDEMPOTENCY_KEY_RETENTION, create_command_once
from devices.models import Command, IdempotencyKey
from telemetry.frames import FrameError, SendCommand, parse_client_frame
from tests.live import database_url, execute_sql, wait_until

pytestmark = pytest.mark.postgres

URL = "/api/devices/sensor-1/commands/"


def nested(depth, leaf=1):
    """A value `depth` arrays deep."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


@pytest.fixture
def owner(make_user):
    return make_user("owner")


@pytest.fixture
def sensor(make_device, owner):
    return make_device("sensor-1", owner)


@pytest.fixture
def api(client, owner, sensor):
    client.force_login(owner)
    return client


def post(client, body, key=None, raw=None):
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    data = raw if raw is not None else orjson.dumps(body)
    return client.post(URL, data, content_type="application/json", **headers)


# Params are checked when a command is created.

# Each a body the API's JSON parser takes (Python's json reads NaN and integers of any width)
# but the hub could not send: orjson refuses integers beyond 64 bits and nesting deeper than
# 254, a device's parser loses integers beyond 2^53, PostgreSQL refuses NUL and reads 1e300
# back from jsonb as an integer of 301 digits.
BAD_PARAMS = [
    (b'{"name": "reboot", "params": {"n": 123456789012345678901234567890}}', "an integer beyond"),
    (b'{"name": "reboot", "params": {"n": 9007199254740993}}', "an integer beyond"),
    (b'{"name": "reboot", "params": {"n": -9007199254740993}}', "an integer beyond"),
    (b'{"name": "reboot", "params": {"n": 1e300}}', "a number beyond"),
    (b'{"name": "reboot", "params": {"n": -9007199254740994.0}}', "a number beyond"),
    (b'{"name": "reboot", "params": {"n": NaN}}', "not finite"),
    (b'{"name": "reboot", "params": {"n": Infinity}}', "not finite"),
    (b'{"name": "reboot", "params": {"n": "a\\u0000b"}}', "NUL"),
    (json.dumps({"name": "reboot", "params": {"deep": nested(300)}}).encode(), "nested deeper than 32"),
    (json.dumps({"name": "reboot", "params": {"deep": nested(32)}}).encode(), "nested deeper than 32"),
    (json.dumps({"name": "reboot", "params": {"blob": "x" * 70_000}}).encode(), "the limit is 65536"),
]
BAD_IDS = ["int-128", "int-2^53+2", "int-negative", "float-1e300", "float-negative", "nan", "infinity", "nul", "depth-300", "depth-33", "too-large"]


@pytest.mark.parametrize("raw, reason", BAD_PARAMS, ids=BAD_IDS)
def test_params_the_hub_cannot_send_are_refused_with_400_and_the_reason(api, raw, reason):
    response = post(api, None, raw=raw)
    assert response.status_code == 400, response.content
    problems = response.json()["detail"]
    assert any(problem["where"].endswith("params") and reason in problem["problem"] for problem in problems), problems
    assert not Command.objects.exists()


def test_params_at_the_bounds_are_taken(api):
    params = {"deep": nested(30), "big": 2**53 - 1, "small": -(2**53 - 1), "text": "x" * 60_000, "f": 1.5e15, "tiny": -1e-300}
    response = post(api, {"name": "reboot", "params": params})
    assert response.status_code == 201, response.content
    assert Command.objects.get().params == params


@pytest.mark.parametrize("params, reason", [
    ({"n": 2**64 - 1}, "an integer beyond"),
    ({"n": 2**53 + 2}, "an integer beyond"),
    ({"n": "a\x00b"}, "NUL"),
    ({"deep": nested(300)}, "nested deeper than 32"),
    ({"deep": nested(32)}, "nested deeper than 32"),
    ({"blob": "x" * 2000}, "the limit is 1000"),
], ids=["int-2^64", "int-2^53+2", "nul", "depth-300", "depth-33", "too-large"])
def test_a_websocket_command_frame_with_such_params_is_an_error_frame(settings, params, reason):
    settings.MAX_PAYLOAD_BYTES = 1000
    frame = json.dumps({"action": "command", "device": "sensor-1", "name": "reboot", "params": params})
    with pytest.raises(FrameError) as refused:
        parse_client_frame(frame)
    assert refused.value.code == "bad_frame" and reason in refused.value.detail, refused.value.detail


# The timeout beside the ttl.


def test_a_command_takes_a_timeout_and_shows_it(api, settings):
    response = post(api, {"name": "reboot", "ttl": 30, "timeout": 5})
    assert response.status_code == 201
    assert (response.json()["ttl"], response.json()["timeout"]) == (30, 5)
    assert Command.objects.get().timeout == 5
    listed = api.get(URL).json()[0]
    assert listed["timeout"] == 5


def test_the_timeout_defaults_to_the_setting(api, settings):
    response = post(api, {"name": "reboot"})
    assert response.json()["timeout"] == settings.COMMAND_DEFAULT_TIMEOUT == 60


@pytest.mark.parametrize("timeout", [0, -1, 3601, "5", 1.5, True])
def test_a_timeout_out_of_bounds_is_400(api, settings, timeout):
    assert settings.COMMAND_MAX_TIMEOUT == 3600
    response = post(api, {"name": "reboot", "timeout": timeout})
    assert response.status_code == 400
    assert any("timeout" in problem["where"] for problem in response.json()["detail"])


def test_a_websocket_command_frame_takes_a_timeout(settings):
    settings.COMMAND_DEFAULT_TIMEOUT = 17
    frame = parse_client_frame('{"action": "command", "device": "d1", "name": "reboot", "timeout": 9}')
    assert frame == SendCommand("d1", "reboot", {}, settings.COMMAND_DEFAULT_TTL, 9)
    assert parse_client_frame('{"action": "command", "device": "d1", "name": "reboot"}').timeout == 17
    for bad in (0, settings.COMMAND_MAX_TIMEOUT + 1, "9", True):
        with pytest.raises(FrameError, match="timeout"):
            parse_client_frame(orjson.dumps({"action": "command", "device": "d1", "name": "x", "timeout": bad}).decode())


# The Idempotency-Key header.


def test_a_retry_with_the_same_key_returns_the_first_command_and_makes_no_second(api):
    first = post(api, {"name": "reboot", "params": {"force": True}}, key="retry-1")
    again = post(api, {"name": "reboot", "params": {"force": True}}, key="retry-1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert Command.objects.count() == 1


def test_another_key_or_no_key_makes_another_command(api):
    post(api, {"name": "reboot"}, key="a")
    post(api, {"name": "reboot"}, key="b")
    post(api, {"name": "reboot"})
    post(api, {"name": "reboot"})
    assert Command.objects.count() == 4


def test_keys_are_per_user(api, make_user, sensor, client):
    post(api, {"name": "reboot"}, key="shared-key")
    staff = Client()
    staff.force_login(make_user("staff", is_staff=True, is_superuser=True))
    response = post(staff, {"name": "reboot"}, key="shared-key")
    assert response.status_code == 201
    assert Command.objects.count() == 2
    assert response.json()["sent_by"] == "staff"


@pytest.mark.parametrize("second", [
    {"name": "shutdown"},
    {"name": "reboot", "params": {"force": True}},
    {"name": "reboot", "ttl": 5},
    {"name": "reboot", "timeout": 5},
])
def test_reusing_a_key_for_another_request_is_422_and_makes_nothing(api, second):
    first = post(api, {"name": "reboot"}, key="k-1")
    response = post(api, second, key="k-1")
    assert response.status_code == 422
    assert "Idempotency-Key" in response.json()["detail"] and first.json()["id"] in response.json()["detail"]
    assert Command.objects.count() == 1


def test_reusing_a_key_for_another_device_is_422(api, make_device, owner):
    make_device("sensor-2", owner)
    post(api, {"name": "reboot"}, key="k-2")
    response = api.post("/api/devices/sensor-2/commands/", {"name": "reboot"}, content_type="application/json",
                        HTTP_IDEMPOTENCY_KEY="k-2")
    assert response.status_code == 422
    assert Command.objects.count() == 1


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "é-accent", "tab\tkey"])
def test_a_malformed_key_is_400(api, key):
    response = post(api, {"name": "reboot"}, key=key)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["detail"]
    assert not Command.objects.exists()


def test_a_refused_request_does_not_use_up_its_key(api):
    assert post(api, {"name": "reboot", "params": {"n": 2**60}}, key="k-3").status_code == 400
    assert post(api, {"name": "reboot"}, key="k-3").status_code == 201


def test_a_key_is_kept_for_its_retention_and_pruned_after(api, owner):
    first = post(api, {"name": "reboot"}, key="old").json()
    IdempotencyKey.objects.update(created=timezone.now() - IDEMPOTENCY_KEY_RETENTION + timedelta(minutes=1))
    assert post(api, {"name": "reboot"}, key="old").json()["id"] == first["id"]
    IdempotencyKey.objects.update(created=timezone.now() - IDEMPOTENCY_KEY_RETENTION - timedelta(minutes=1))
    post(api, {"name": "other"}, key="new")
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["new"]  # pruned on create
    assert post(api, {"name": "reboot"}, key="old").json()["id"] != first["id"]


def test_concurrent_retries_make_one_command(owner, sensor):
    """Two requests with one key at once, each on its own connection: both get the one command."""
    barrier = threading.Barrier(2)
    for round in range(10):
        answers = [None, None]

        def retry(slot):
            try:
                barrier.wait(5)
                answers[slot] = create_command_once(f"race-{round}", sensor.pk, owner, "reboot", {}, 60, 30)
            finally:
                connection.close()

        threads = [threading.Thread(target=retry, args=(slot,)) for slot in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert answers[0][0].pk == answers[1][0].pk
        assert sorted(created for _, created in answers) == [False, True]
    assert Command.objects.count() == 10


def test_a_retry_waits_for_a_first_request_still_in_its_transaction(owner, sensor, settings):
    """On PostgreSQL: the first request has made its command and key but not committed; the
    retry blocks on the key's unique index, then returns the first's command."""
    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        pytest.skip("SQLite has one writer at a time: the retry cannot get this far")
    import psycopg

    first = psycopg.connect(database_url(database))
    try:
        command_id = first.execute(
            f"INSERT INTO {Command._meta.db_table} (id, device_id, name, params, created_by_id, created_by_name, status,"
            " ttl, timeout, created, expires_at, error) VALUES (gen_random_uuid(), %s, 'reboot', '{}', %s, %s,"
            " 'pending', 60, 30, now(), now() + interval '60 s', '') RETURNING id",
            (sensor.pk, owner.pk, owner.username),
        ).fetchone()[0]
        from devices.commands import request_fingerprint

        first.execute(
            f"INSERT INTO {IdempotencyKey._meta.db_table} (user_id, key, fingerprint, command_id, created)"
            " VALUES (%s, 'held', %s, %s, now())",
            (owner.pk, request_fingerprint(sensor.pk, "reboot", {}, 60, 30), command_id),
        )
        answer = []

        def retry():
            try:
                answer.append(create_command_once("held", sensor.pk, owner, "reboot", {}, 60, 30))
            finally:
                connection.close()

        thread = threading.Thread(target=retry)
        thread.start()
        wait_until(lambda: execute_sql(
            database, "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
            [f"%{IdempotencyKey._meta.db_table}%"],
        ), message="the retry blocked on the key")
        first.commit()
        thread.join(10)
    finally:
        first.close()
    (command, created), = answer
    assert (command.pk, created) == (command_id, False)
    assert Command.objects.count() == 1
