"""Poison isolation, with the real bridge, Mosquitto and database (SQLite here, PostgreSQL
again through tests/test_postgres.py): nothing one device sends, and nothing the database
refuses of it, stops the hub from storing what every other message holds. docs/reliability.md,
"Poison isolation", says what the bridge does."""
import time

import orjson
import pytest

from devices.models import Command
from devices.models import Device as RegisteredDevice
from telemetry.models import LatestValue, Reading
from tests.conftest import PASSWORD, running, running_hub
from tests.ingest import counted_so_far, database_refuses, rejections, wait_for_rejections
from tests.live import Device, unique_id, wait_until
from tests.servers import MosquittoServer

pytestmark = [pytest.mark.live, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """A broker of this module's own: the retained messages it tests reach no other test's bridge."""
    yield from running(MosquittoServer(tmpdir=tmp_path_factory.mktemp("mosquitto")))


@pytest.fixture(scope="module")
def hub(django_db_setup, redis_server, broker, tmp_path_factory):
    yield from running_hub(redis_server, broker, tmp_path_factory.mktemp("hub"), device_max_messages_per_second=100_000)


@pytest.fixture
def database():
    from django.conf import settings

    return settings.DATABASES["default"]


def stored(device, key=None):
    readings = Reading.objects.filter(device=device)
    if key is not None:
        readings = readings.filter(key=key)
    return sorted(readings.values_list("key", "ts"))


def sensor(hub, device):
    return Device(hub.mqtt_url, device.id, device.mqtt_password).connect()


def a_while_ago():
    return int(time.time() * 1000) - 3_600_000


def test_a_reading_holding_nul_is_refused_and_every_other_reading_is_stored(hub, make_device, owner):
    bad, good = make_device(unique_id("nul"), owner), make_device(unique_id("fine"), owner)
    bad_sensor, good_sensor = sensor(hub, bad), sensor(hub, good)
    before, log = counted_so_far(hub), len(hub.bridge.log())
    ts = a_while_ago()

    bad_sensor.send_reading({"note": "a\u0000b", "temp": 20}, ts=ts)
    bad_sensor.send_reading({"note": "ab", "temp": 21}, ts=ts + 1)
    good_sensor.send_reading({"temp": 22}, ts=ts)

    wait_until(lambda: stored(good) == [("temp", ts)], message="the other device's reading stored")
    wait_until(lambda: stored(bad) == [("note", ts + 1), ("temp", ts + 1)], message="the device's next reading stored")
    hub.bridge.wait_for_log(rf"dropped a message from device {bad.id}: bad_value: note: text holds a NUL", start=log)
    wait_for_rejections(hub, {"bad_value": 1}, before, log)
    bad_sensor.go_offline()
    good_sensor.go_offline()


def test_a_message_the_database_refuses_is_rejected_alone_also_when_it_waited_at_the_broker(hub, database, make_device, owner):
    """The bridge is down while two devices publish at QoS 1, among them a message validation
    refuses (NUL) and one only the database refuses: the restarted bridge takes the backlog in
    large flushes, stores every other message of both devices, and rejects those two."""
    bad, good = make_device(unique_id("poisoned"), owner), make_device(unique_id("healthy"), owner)
    bad_sensor, good_sensor = sensor(hub, bad), sensor(hub, good)
    ts = a_while_ago()
    with database_refuses(database, Reading._meta.db_table, f"{{row}}device_id = '{bad.id}' AND {{row}}key = 'poison'"):
        hub.bridge.stop()
        for n in range(100):
            good_sensor.send_reading({"n": n}, ts=ts + n)
            bad_sensor.send_reading({"n": n}, ts=ts + n)
            if n == 50:
                bad_sensor.send_reading({"poison": 1, "n": n}, ts=ts + 1000)
            if n == 70:
                bad_sensor.send_reading({"note": "\u0000"}, ts=ts + 1001)
        log = len(hub.bridge.log())
        hub.start_bridge()

        expected = [("n", ts + n) for n in range(100)]
        wait_until(lambda: stored(good) == expected, message="every reading of the other device stored")
        wait_until(lambda: stored(bad) == expected, message="every other reading of the device stored")
        wait_for_rejections(hub, {"store_refused": 1, "bad_value": 1}, start=log)
        hub.bridge.wait_for_log(rf"dropped a message from device {bad.id}: store_refused: the database refused it: ", start=log)
        # The backlog came in flushes of many messages: the refused one was found by splitting.
        split = hub.bridge.wait_for_log(r"the database refused a flush of \d+ readings from (\d+) messages", start=log)
        assert int(split.group(1)) > 1
        assert not LatestValue.objects.filter(device=bad, key="poison").exists()

    # Nothing is held: the next reading is stored, and the refused message is not redelivered.
    bad_sensor.send_reading({"n": 100}, ts=ts + 100)
    wait_until(lambda: stored(bad, "n")[-1] == ("n", ts + 100), message="a reading after the refused ones")
    hub.bridge.stop()
    log = len(hub.bridge.log())
    hub.start_bridge()
    hub.bridge.wait_for_log(r"stats: ", start=log)
    assert rejections(hub, log)["store_refused"] == 0
    assert stored(bad, "poison") == []
    bad_sensor.go_offline()
    good_sensor.go_offline()


def test_retained_telemetry_is_refused_at_every_bridge_start_and_stored_once(hub, make_device, owner):
    device = make_device(unique_id("retainer"), owner)
    retainer = sensor(hub, device)
    log = len(hub.bridge.log())
    # Without a ts, each delivery would take a new receive time: a new reading each time.
    retainer.publish(retainer.topic("telemetry"), orjson.dumps({"temp": 19.5}), retain=True)
    # Delivered to the running bridge's subscription, the broker clears the retain flag: a reading.
    wait_until(lambda: len(stored(device)) == 1, message="the reading stored")
    for _ in range(3):
        hub.bridge.stop()
        log = len(hub.bridge.log())
        hub.start_bridge()
        hub.bridge.wait_for_log(rf"dropped a message from device {device.id}: retained: ", start=log)
        wait_for_rejections(hub, {"retained": 1}, start=log)
    assert len(stored(device)) == 1
    retainer.publish(retainer.topic("telemetry"), b"", retain=True)  # clears it at the broker
    retainer.go_offline()


@pytest.fixture
def answering(hub, device, owner):
    """The device, online, and a dashboard watching it."""
    device_sensor = sensor(hub, device)
    dashboard = hub.dashboard(f"ws/devices/{device.id}/", hub.login(owner.username, PASSWORD))
    dashboard.frame(type="snapshot")
    yield device_sensor, dashboard
    dashboard.close()
    device_sensor.go_offline()


def sent_command(device_sensor, device):
    """A command created for the online device, once the bridge has sent it."""
    command = Command.objects.create(device_id=device.id, name="dump", params={}, ttl=60)
    assert device_sensor.next_command()["id"] == str(command.id)
    return command


def answer_text(command, result):
    """A device's answer holding `result`, JSON text as the device wrote it."""
    return f'{{"id": "{command.id}", "ok": true, "result": {result}}}'.encode()


@pytest.mark.parametrize("result, reason", [
    pytest.param("[" * 300 + "]" * 300, "too_deep", id="nested-300-deep"),
    pytest.param("[" * 1000 + "]" * 1000, "too_deep", id="nested-1000-deep"),
    pytest.param('{"log": "a\\u0000b"}', "bad_result", id="nul"),
    pytest.param('{"count": 18014398509481984}', "bad_result", id="integer-2-54"),
    pytest.param('{"huge": 1e300}', "bad_result", id="float-1e300"),
])
def test_a_result_the_hub_cannot_keep_fails_its_command_and_dashboards_are_told(hub, answering, device, result, reason):
    device_sensor, dashboard = answering
    command = sent_command(device_sensor, device)
    before, log = counted_so_far(hub), len(hub.bridge.log())
    device_sensor.publish(device_sensor.topic("commands/result"), answer_text(command, result))

    frame = dashboard.frame(type="command", id=str(command.id), status="failed")
    assert frame["error"].startswith(f"the device's result was refused: {reason}: ")
    assert frame["result"] is None
    command.refresh_from_db()
    assert (command.status, command.result, command.error) == ("failed", None, frame["error"])
    hub.bridge.wait_for_log(rf"dropped a message from device {device.id}: {reason}: ", start=log)
    wait_for_rejections(hub, {reason: 1}, before, log)


def test_a_result_the_database_refuses_fails_its_command_and_is_not_retried(hub, database, answering, device):
    device_sensor, dashboard = answering
    command = sent_command(device_sensor, device)
    before, log = counted_so_far(hub), len(hub.bridge.log())
    stored_id = command.id.hex if database["ENGINE"].endswith("sqlite3") else command.id  # as Django stores a uuid
    refused = f"{{row}}id = '{stored_id}' AND {{row}}result IS NOT NULL"
    with database_refuses(database, Command._meta.db_table, refused):
        device_sensor.publish(device_sensor.topic("commands/result"), answer_text(command, '{"files": 3}'))
        frame = dashboard.frame(type="command", id=str(command.id), status="failed")
    assert frame["error"].startswith("the device's result was refused: store_refused: the database refused it: ")
    wait_for_rejections(hub, {"store_refused": 1}, before, log)
    hub.bridge.wait_for_log(rf"dropped a message from device {device.id}: store_refused: ", start=log)
    assert "retrying in" not in hub.bridge.log()[log:]


def test_a_well_formed_result_as_deep_as_allowed_still_succeeds(hub, answering, device):
    device_sensor, dashboard = answering
    command = sent_command(device_sensor, device)
    device_sensor.publish(device_sensor.topic("commands/result"), answer_text(command, "[" * 32 + "]" * 32))
    frame = dashboard.frame(type="command", id=str(command.id), status="succeeded")
    nested = []
    for _ in range(31):
        nested = [nested]
    assert frame["result"] == nested


def test_a_status_the_database_refuses_is_rejected_and_the_next_one_is_stored(hub, database, device):
    device_sensor = sensor(hub, device)
    wait_until(lambda: RegisteredDevice.objects.get(pk=device.id).online, message="the device online")
    before, log = counted_so_far(hub), len(hub.bridge.log())
    with database_refuses(database, RegisteredDevice._meta.db_table, f"{{row}}id = '{device.id}' AND NOT {{row}}online"):
        device_sensor.publish(device_sensor.topic("status"), b"offline", retain=True)
        hub.bridge.wait_for_log(rf"dropped a message from device {device.id}: store_refused: the database refused it", start=log)
        wait_for_rejections(hub, {"store_refused": 1}, before, log)
    assert RegisteredDevice.objects.get(pk=device.id).online
    assert "retrying in" not in hub.bridge.log()[log:]
    device_sensor.go_offline()
    wait_until(lambda: not RegisteredDevice.objects.get(pk=device.id).online, message="the next status stored")
