"""The whole road over real sockets: an MQTT device, Mosquitto, the bridge process, Redis,
daphne, and dashboards' websockets signed in through the login page."""
import re
import threading
import time
import uuid

import pytest
from django.conf import settings
from websockets.exceptions import ConnectionClosed, InvalidStatus

from devices.credentials import ensure_account
from devices.models import BrokerAccount, Command
from telemetry.checkpoints import log_salts
from telemetry.models import Reading
from tests.conftest import PASSWORD
from tests.live import Device, Gateway, unique_id, wait_until

pytestmark = [pytest.mark.live, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def cookie(live_hub, owner):
    return live_hub.login(owner.username, PASSWORD)


def now_ms():
    return int(time.time() * 1000)


def test_a_reading_reaches_the_device_socket_and_the_fleet_socket(live_hub, device, cookie):
    single = live_hub.dashboard(f"ws/devices/{device.id}/", cookie)
    snapshot = single.frame(type="snapshot")
    assert (snapshot["device"], snapshot["online"], snapshot["latest"]) == (device.id, False, {})
    fleet = live_hub.dashboard("ws/fleet/", cookie)
    fleet.send(action="subscribe", devices=[device.id])
    fleet.frame(type="snapshot", device=device.id)

    sensor = Device(live_hub.mqtt_url, device.id, device.mqtt_password).connect()
    ts = now_ms()
    sensor.send_reading({"temp": 21.5, "door": False, "mode": "eco"}, ts=ts)

    for dashboard in (single, fleet):
        frame = dashboard.frame(type="readings", device=device.id)
        assert frame["items"] == [{"ts": ts, "values": {"temp": 21.5, "door": False, "mode": "eco"}}]
        assert frame["seq"] == snapshot["seq"] + 1
    stored = {reading.key: reading.value for reading in Reading.objects.filter(device=device)}
    assert stored == {"temp": 21.5, "door": False, "mode": "eco"}
    sensor.go_offline()


def test_the_connected_bridge_keeps_its_heartbeat_file_fresh(live_hub):
    heartbeat = live_hub.workdir / "bridge.heartbeat"
    wait_until(heartbeat.exists, message="the heartbeat file")
    assert time.time() - heartbeat.stat().st_mtime < 10


def test_the_bridge_has_sqlites_log_copied_back_long_before_its_own_checkpoint_is_due(live_hub, device):
    """telemetry.checkpoints: while readings are stored, the log starts over again and again, where
    the writer alone would let it grow to 20,000 pages first."""
    database = settings.DATABASES["default"]
    if database["ENGINE"] != "django.db.backends.sqlite3":
        pytest.skip("SQLite's write-ahead log")
    seen = [log_salts(database["NAME"])]
    sensor = Device(live_hub.mqtt_url, device.id, device.mqtt_password).connect()

    def started_over_twice():
        sensor.send_reading({"temp": 20.0}, ts=now_ms())  # a flush: once the log is copied, it starts over
        salts = log_salts(database["NAME"])
        if salts != seen[-1]:
            seen.append(salts)
        return len(seen) > 2

    wait_until(started_over_twice, message="the log to start over twice")
    sensor.go_offline()


def test_status_changes_reach_dashboards_and_the_snapshot(live_hub, device, cookie):
    fleet = live_hub.dashboard("ws/fleet/", cookie)
    fleet.send(action="subscribe", devices="*")
    fleet.frame(type="snapshot", device=device.id, online=False)

    sensor = Device(live_hub.mqtt_url, device.id, device.mqtt_password).connect()
    fleet.frame(type="status", device=device.id, online=True)
    sensor.send_reading({"temp": 20.0})
    fleet.frame(type="readings", device=device.id)
    later = live_hub.dashboard(f"ws/devices/{device.id}/", cookie).frame(type="snapshot")
    assert later["online"] is True and later["latest"]["temp"]["value"] == 20.0 and later["last_seen"]

    sensor.go_offline()
    fleet.frame(type="status", device=device.id, online=False)


@pytest.mark.parametrize("ok", [True, False], ids=["succeeded", "failed"])
def test_a_command_goes_out_over_mqtt_and_its_answer_reaches_every_dashboard(live_hub, device, cookie, ok):
    sender = live_hub.dashboard("ws/fleet/", cookie)
    sender.send(action="subscribe", devices=[device.id])
    watcher = live_hub.dashboard(f"ws/devices/{device.id}/", cookie)
    watcher.frame(type="snapshot")
    sensor = Device(live_hub.mqtt_url, device.id, device.mqtt_password).connect()
    sender.frame(type="status", device=device.id, online=True)

    sender.send(action="command", device=device.id, name="set_interval", params={"seconds": 5}, ttl=30)
    pending = sender.frame(type="command", status="pending")
    assert sensor.next_command() == {"id": pending["id"], "name": "set_interval", "params": {"seconds": 5}}
    for dashboard in (sender, watcher):
        dashboard.frame(type="command", id=pending["id"], status="sent")

    if ok:
        sensor.answer(pending["id"], ok=True, result={"interval": 5})
    else:
        sensor.answer(pending["id"], ok=False, error="interval locked")
    status = "succeeded" if ok else "failed"
    for dashboard in (sender, watcher):
        done = dashboard.frame(type="command", id=pending["id"], status=status)
        assert (done["result"], done["error"]) == (({"interval": 5}, None) if ok else (None, "interval locked"))
    assert Command.objects.get(pk=pending["id"]).status == status
    sensor.go_offline()


def test_a_command_for_an_offline_device_is_sent_when_it_comes_online(live_hub, device, cookie):
    dashboard = live_hub.dashboard(f"ws/devices/{device.id}/", cookie)
    dashboard.frame(type="snapshot", online=False)
    dashboard.send(action="command", name="ping", ttl=60)
    pending = dashboard.frame(type="command", status="pending")
    dashboard.no_frame(within=2.5, type="command", status="sent")  # two sweeps of the bridge

    sensor = Device(live_hub.mqtt_url, device.id, device.mqtt_password).connect()
    assert sensor.next_command()["id"] == pending["id"]
    dashboard.frame(type="command", id=pending["id"], status="sent")
    sensor.go_offline()


def test_a_command_whose_ttl_runs_out_expires_and_is_never_sent(live_hub, device, cookie):
    dashboard = live_hub.dashboard(f"ws/devices/{device.id}/", cookie)
    dashboard.frame(type="snapshot")
    dashboard.send(action="command", name="reboot", ttl=1)
    pending = dashboard.frame(type="command", status="pending")
    dashboard.frame(type="command", id=pending["id"], status="expired")

    sensor = Device(live_hub.mqtt_url, device.id, device.mqtt_password).connect()
    dashboard.frame(type="status", online=True)
    sensor.no_command(within=2)
    assert Command.objects.get(pk=pending["id"]).status == "expired"
    sensor.go_offline()


BAD_TELEMETRY = {
    "not_json": b"temp=21",
    "bad_shape": b"[]",
    "bad_key": b'{"temp rature": 1}',
    "bad_value": b'{"temp": [1, 2]}',
    "bad_ts": b'{"ts": 1000, "values": {"temp": 1}}',
    "too_many": b"[" + b",".join([b"{}"] * 1001) + b"]",
    "too_large": b'{"blob": "' + b"x" * 5000 + b'"}',
}


def rejected_counts(bridge_log):
    """The reject counters of the bridge's latest stats line."""
    lines = re.findall(r"stats: .*rejected=\{([^}]*)\}", bridge_log)
    if not lines:
        return {}
    return {reason: int(count) for reason, count in re.findall(r"(\w+)=(\d+)", lines[-1])}


def test_every_kind_of_bad_message_is_counted_and_logged_and_good_ones_still_flow(live_hub, device, cookie):
    dashboard = live_hub.dashboard(f"ws/devices/{device.id}/", cookie)
    dashboard.frame(type="snapshot")
    before = rejected_counts(live_hub.bridge.log())
    sensor = Device(live_hub.mqtt_url, device.id, device.mqtt_password).connect()
    telemetry = sensor.topic("telemetry")

    for payload in BAD_TELEMETRY.values():
        sensor.publish(telemetry, payload)
    sensor.publish(telemetry, b'{"temp": "\xff\xfe"}')  # invalid UTF-8
    sensor.publish(telemetry, b'{"temp": NaN}')
    sensor.publish(sensor.topic("status"), b"sleepy")
    sensor.publish(sensor.topic("commands/result"), b'{"id": "not-a-uuid", "ok": true}')
    # The broker lets a device publish on its own topics only; a gateway may publish on any.
    username, password = unique_id("gateway.test"), uuid.uuid4().hex
    ensure_account(username, password, BrokerAccount.Role.GATEWAY)
    gateway = Gateway(live_hub.mqtt_url, username, password).connect()
    gateway.publish(f"devices/{unique_id('ghost')}/telemetry", b'{"temp": 1}')
    gateway.publish("devices/bad id!/telemetry", b'{"temp": 1}')
    gateway.disconnect()
    sensor.send_reading({"temp": 19.5})

    assert dashboard.frame(type="readings")["items"][0]["values"] == {"temp": 19.5}
    expected = {reason: 1 for reason in BAD_TELEMETRY} | {
        "not_json": 3, "bad_shape": 2, "bad_status": 1, "unknown_device": 1, "bad_topic": 1,
    }

    def counted():
        after = rejected_counts(live_hub.bridge.log())
        return all(after.get(reason, 0) - before.get(reason, 0) >= n for reason, n in expected.items())

    wait_until(counted, message=f"reject counters to rise by {expected}")
    log = live_hub.bridge.log()
    for reason in BAD_TELEMETRY:
        assert re.search(rf"dropped a message from device {device.id}: {reason}: ", log), reason
    assert live_hub.bridge.process.poll() is None
    sensor.go_offline()


def test_a_bridge_restarted_while_a_device_publishes_at_qos1_loses_no_reading(live_hub, device):
    sensor = Device(live_hub.mqtt_url, device.id, device.mqtt_password).connect()
    count, start = 400, now_ms() - 60_000
    published = []

    def publish_all():
        for n in range(count):
            sensor.send_reading({"n": n}, ts=start + n, qos=1)
            published.append(n)
            time.sleep(0.005)

    publisher = threading.Thread(target=publish_all)
    publisher.start()
    wait_until(lambda: Reading.objects.filter(device=device).count() >= 20, message="the first readings stored")
    live_hub.bridge.stop()
    assert len(published) < count, "the bridge must stop while the device is still publishing"
    live_hub.start_bridge()
    publisher.join(timeout=30)

    wait_until(lambda: Reading.objects.filter(device=device).count() == count, timeout=20,
               message=f"all {count} readings stored")
    stored = sorted(Reading.objects.filter(device=device).values_list("ts", flat=True))
    assert stored == [start + n for n in range(count)]
    sensor.go_offline()


def test_a_burst_of_readings_read_from_the_socket_together_is_stored_whole(live_hub, device):
    """The bridge reads many MQTT packets with one recv() (bridge.mqtt.BufferedClient)."""
    sensor = Device(live_hub.mqtt_url, device.id, device.mqtt_password).connect()
    count, start = 300, now_ms() - 60_000
    for n in range(count):
        sensor.send_reading({"n": n}, ts=start + n, qos=1)
    wait_until(lambda: Reading.objects.filter(device=device).count() == count, timeout=20,
               message=f"all {count} readings stored")
    stored = sorted(Reading.objects.filter(device=device).values_list("ts", flat=True))
    assert stored == [start + n for n in range(count)]
    sensor.go_offline()


def test_a_socket_without_a_signed_in_user_is_closed_with_4401(live_hub):
    dashboard = live_hub.dashboard("ws/fleet/")
    with pytest.raises(ConnectionClosed) as closed:
        dashboard.socket.recv(timeout=5)
    assert closed.value.rcvd.code == 4401


def test_a_socket_from_another_origin_is_refused(live_hub, cookie):
    with pytest.raises(InvalidStatus) as refused:
        live_hub.dashboard("ws/fleet/", cookie, origin="http://evil.example")
    assert refused.value.response.status_code == 403


def test_another_user_neither_sees_nor_commands_the_device(live_hub, device, cookie, make_user, make_device):
    stranger = make_user(unique_id("stranger"))
    own_device = make_device(unique_id("own"), stranger)
    stranger_cookie = live_hub.login(stranger.username, PASSWORD)

    single = live_hub.dashboard(f"ws/devices/{device.id}/", stranger_cookie)
    assert single.frame(type="error")["code"] == "forbidden"
    with pytest.raises(ConnectionClosed) as closed:
        single.socket.recv(timeout=5)
    assert closed.value.rcvd.code == 4403

    fleet = live_hub.dashboard("ws/fleet/", stranger_cookie)
    fleet.send(action="subscribe", devices=[device.id])
    assert fleet.frame(type="error", code="forbidden")["devices"] == [device.id]
    fleet.send(action="command", device=device.id, name="reboot")
    assert fleet.frame(type="error", code="forbidden")["device"] == device.id
    fleet.send(action="subscribe", devices="*")
    assert fleet.frame(type="snapshot")["device"] == own_device.id

    owner_view = live_hub.dashboard(f"ws/devices/{device.id}/", cookie)
    owner_view.frame(type="snapshot")
    sensor = Device(live_hub.mqtt_url, device.id, device.mqtt_password).connect()
    sensor.send_reading({"temp": 1.0})
    owner_view.frame(type="readings")
    fleet.no_frame(within=1, device=device.id)
    assert not Command.objects.filter(device=device).exists()
    sensor.go_offline()


def test_a_group_member_watches_but_cannot_command(live_hub, device, make_user):
    from django.contrib.auth.models import Group

    member = make_user(unique_id("member"))
    team = Group.objects.create(name=unique_id("team"))
    member.groups.add(team)
    device.groups.add(team)
    dashboard = live_hub.dashboard(f"ws/devices/{device.id}/", live_hub.login(member.username, PASSWORD))

    assert dashboard.frame(type="snapshot")["device"] == device.id
    dashboard.send(action="command", name="reboot")
    assert dashboard.frame(type="error")["code"] == "forbidden"
    dashboard.send(action="subscribe", devices=["x"])
    assert dashboard.frame(type="error")["code"] == "unknown_action"
    assert not Command.objects.filter(device=device).exists()
