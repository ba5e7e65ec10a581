"""Commands through the real hub (bridge, daphne, Redis, Mosquitto, a paho device): a command
the hub cannot encode, a Redis outage while one is created, a retried request, and a device
that never answers."""
import json
import threading
import uuid

import pytest

from devices.models import Command
from tests.conftest import PASSWORD, running, running_hub
from tests.live import Device, wait_until
from tests.servers import RedisServer

pytestmark = [pytest.mark.live, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def cookie(live_hub, owner):
    return live_hub.login(owner.username, PASSWORD)


def nested(depth, leaf=1):
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def online(hub, device):
    """The device, connected, once the hub has it online."""
    sensor = Device(hub.mqtt_url, device.id, device.mqtt_password).connect()
    wait_until(lambda: type(device).objects.get(pk=device.pk).online, message=f"{device.id} online")
    return sensor


def test_commands_the_hub_cannot_encode_fail_and_the_sweep_sends_the_next(live_hub, device, owner, cookie):
    # Stored as they could be before params were checked on creation; nothing announces them,
    # so only the bridge's sweep finds them, oldest first.
    dashboard = live_hub.dashboard(f"ws/devices/{device.id}/", cookie)
    dashboard.frame(type="snapshot")
    sensor = online(live_hub, device)
    poison = [
        Command.objects.create(device=device, name="wide", params={"n": 2**70}, ttl=60, timeout=30),
        Command.objects.create(device=device, name="deep", params={"deep": nested(300)}, ttl=60, timeout=30),
    ]
    good = Command.objects.create(device=device, name="ping", params={"n": 1}, ttl=60, timeout=30)

    assert sensor.next_command() == {"id": str(good.pk), "name": "ping", "params": {"n": 1}}
    for command in poison:
        frame = dashboard.frame(type="command", id=str(command.pk), status="failed")
        assert frame["params"] is None and "the hub cannot encode its params" in frame["error"]
        command.refresh_from_db()
        assert command.status == "failed" and "cannot encode" in command.error
        live_hub.bridge.wait_for_log(rf"command {command.pk} '{command.name}' to {device.id} cannot be encoded")
    sensor.no_command(within=1.5)

    # And the sweep goes on: it still sends what comes later.
    later = Command.objects.create(device=device, name="ping", params={}, ttl=60, timeout=30)
    assert sensor.next_command()["id"] == str(later.pk)
    sensor.go_offline()


def test_params_the_hub_cannot_send_are_refused_over_the_api_and_the_websocket(live_hub, device, cookie):
    deep = json.dumps({"name": "reboot", "params": {"deep": nested(300)}}).encode()  # beyond orjson
    response = live_hub.api("POST", f"api/devices/{device.id}/commands/", cookie, deep)
    assert response.status == 400
    assert "nested deeper than 32" in response.body.decode()

    dashboard = live_hub.dashboard(f"ws/devices/{device.id}/", cookie)
    dashboard.frame(type="snapshot")
    dashboard.send(action="command", name="reboot", params={"n": 2**64 - 1})
    error = dashboard.frame(type="error")
    assert error["code"] == "bad_frame" and "an integer beyond" in error["detail"]
    dashboard.send(action="command", name="ping")  # the socket goes on
    dashboard.frame(type="command", name="ping", status="pending")
    assert list(Command.objects.filter(device=device).values_list("name", flat=True)) == ["ping"]


def test_a_sent_command_without_an_answer_expires_after_its_timeout(live_hub, device, cookie):
    sensor = online(live_hub, device)
    dashboard = live_hub.dashboard(f"ws/devices/{device.id}/", cookie)
    dashboard.frame(type="snapshot")
    dashboard.send(action="command", name="reboot", ttl=60, timeout=1)
    pending = dashboard.frame(type="command", status="pending")
    assert pending["timeout"] == 1
    received = sensor.next_command()  # and never answered
    sent = dashboard.frame(type="command", id=pending["id"], status="sent")

    expired = dashboard.frame(type="command", id=pending["id"], status="expired", timeout=5)
    assert expired["sent"] == sent["sent"] and expired["finished"] >= sent["sent"] + 1000
    assert "no answer within its timeout of 1 s" in expired["error"]
    api = live_hub.api("GET", f"api/commands/{pending['id']}/", cookie).json()
    assert (api["status"], api["timeout"], api["error"]) == ("expired", 1, expired["error"])

    # The answer, come late, is refused as an answer to no command awaiting one.
    log = len(live_hub.bridge.log())
    sensor.answer(received["id"], ok=True, result="done")
    live_hub.bridge.wait_for_log(rf"device {device.id}: unknown_command: no command {pending['id']}", start=log)
    assert Command.objects.get(pk=pending["id"]).status == "expired"
    dashboard.no_frame(within=1, type="command", id=pending["id"], status="succeeded")
    sensor.go_offline()


def test_two_requests_with_one_idempotency_key_at_once_make_one_command(live_hub, device, cookie):
    for round in range(5):
        key = f"retry-{uuid.uuid4()}"
        barrier = threading.Barrier(2)
        answers = [None, None]

        def request(slot):
            barrier.wait(5)
            answers[slot] = live_hub.api("POST", f"api/devices/{device.id}/commands/", cookie, {"name": "reboot"},
                                         headers={"Idempotency-Key": key})

        threads = [threading.Thread(target=request, args=(slot,)) for slot in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        assert [answer.status for answer in answers] == [201, 201]
        assert answers[0].json()["id"] == answers[1].json()["id"]
    assert Command.objects.filter(device=device).count() == 5


@pytest.fixture
def redis(tmp_path):
    (tmp_path / "redis").mkdir()
    yield from running(RedisServer(tmp_path / "redis"))


@pytest.fixture(params=["pubsub", "core"])
def hub(request, django_db_setup, redis, mosquitto_server, tmp_path):
    """A hub with a Redis of its own, on each of channels-redis's layers."""
    (tmp_path / "hub").mkdir()
    yield from running_hub(redis, mosquitto_server, tmp_path / "hub", channel_layer=request.param)


def test_with_redis_down_a_command_is_created_201_and_delivered_once_from_the_database(hub, redis, device, owner):
    cookie = hub.login(owner.username, PASSWORD)
    sensor = online(hub, device)
    redis.stop()
    web_log = len(hub.web.log())

    response = hub.api("POST", f"api/devices/{device.id}/commands/", cookie, {"name": "reboot", "params": {"n": 1}})
    assert response.status == 201, response.body
    command = response.json()
    hub.web.wait_for_log(rf"could not announce command {command['id']}", start=web_log)

    assert sensor.next_command(timeout=10) == {"id": command["id"], "name": "reboot", "params": {"n": 1}}
    sensor.no_command(within=3)
    assert Command.objects.filter(device=device).count() == 1
    wait_until(lambda: Command.objects.get(pk=command["id"]).status == "sent", message="the command marked sent")
    sensor.answer(command["id"], ok=True, result="ok")
    wait_until(lambda: Command.objects.get(pk=command["id"]).status == "succeeded", message="its answer stored")
    sensor.go_offline()
