"""Faults, with real processes killed: Redis, Mosquitto, the bridge and daphne are started by the
test, then killed, stopped or starved while devices publish, and no stored reading may be lost
or stored twice. docs/reliability.md explains what each fault does and why the hub survives it.

Each test has its own Redis, Mosquitto and hub, so a killed server harms no other test."""
import contextlib
import re
import signal
import sqlite3
import sys
import threading
import time

import orjson
import pytest
from django.utils import timezone

from devices.models import Command
from devices.models import Device as RegisteredDevice
from telemetry.models import Reading
from tests.conftest import PASSWORD, running, running_hub
from tests.live import Device, HubProcess, unique_id, wait_until
from tests.servers import MosquittoServer, RedisServer

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

# Every reading of these tests is one message: let a device send as fast as it can.
FAST_DEVICE = {"device_max_messages_per_second": 100_000}


@pytest.fixture
def redis(tmp_path):
    (tmp_path / "redis").mkdir()
    yield from running(RedisServer(tmp_path / "redis"))


@pytest.fixture
def broker(tmp_path):
    (tmp_path / "mosquitto").mkdir()
    yield from running(MosquittoServer(tmp_path / "mosquitto"))


@pytest.fixture
def hub(django_db_setup, redis, broker, tmp_path):
    (tmp_path / "hub").mkdir()
    yield from running_hub(redis, broker, tmp_path / "hub", **FAST_DEVICE)


def stored_ts(device):
    return sorted(Reading.objects.filter(device=device).values_list("ts", flat=True))


def stored_count(device):
    return Reading.objects.filter(device=device).count()


class Publisher(threading.Thread):
    """Publishes `count` readings at QoS 1, one message each, each with its own ts."""

    def __init__(self, sensor, count, pause=0.0):
        super().__init__(daemon=True)
        self.sensor = sensor
        self.count = count
        self.pause = pause
        self.start_ts = int(time.time() * 1000) - 3_600_000
        self.published = 0

    def expected(self):
        return [self.start_ts + n for n in range(self.count)]

    def run(self):
        for n in range(self.count):
            self.sensor.send_reading({"n": n}, ts=self.start_ts + n)
            self.published += 1
            if self.pause:
                time.sleep(self.pause)

    def finish(self, timeout=60):
        self.join(timeout)
        assert not self.is_alive(), f"published only {self.published} of {self.count}"


def test_a_bridge_killed_in_the_middle_of_a_flush_loses_nothing_and_stores_nothing_twice(hub, device):
    sensor = Device(hub.mqtt_url, device.id, device.mqtt_password).connect()
    publisher = Publisher(sensor, 3000)
    publisher.start()
    wait_until(lambda: stored_count(device) >= 300, message="the first readings stored")
    # The bridge flushes every few milliseconds while readings stream in: SIGKILL lands in or
    # between flushes, with stored readings not yet acknowledged to the broker.
    hub.bridge.stop(signal.SIGKILL)
    assert publisher.published < publisher.count, "the bridge must die while the device is still publishing"
    killed_at = stored_count(device)
    hub.start_bridge()
    publisher.finish()

    wait_until(lambda: stored_count(device) >= publisher.count, timeout=30, message="every reading stored")
    assert killed_at < publisher.count
    assert stored_ts(device) == publisher.expected()
    sensor.go_offline()


# Long enough to outlive a restart of the hub (about ten seconds on a busy machine).
TTL = 30


def test_a_command_to_an_offline_device_stays_pending_across_a_hub_restart_and_expires_on_time(hub, device, owner):
    dashboard = hub.dashboard(f"ws/devices/{device.id}/", hub.login(owner.username, PASSWORD))
    dashboard.frame(type="snapshot", online=False)
    dashboard.send(action="command", name="reboot", ttl=TTL)
    pending = dashboard.frame(type="command", status="pending")
    command = Command.objects.get(pk=pending["id"])
    dashboard.no_frame(within=2.5, type="command", status="sent")  # two sweeps of the bridge
    dashboard.close()

    hub.stop()
    command.refresh_from_db()
    assert (command.status, command.sent_at) == ("pending", None)
    hub.start()
    dashboard = hub.dashboard(f"ws/devices/{device.id}/", hub.login(owner.username, PASSWORD))
    dashboard.frame(type="snapshot")
    left = (command.expires_at - timezone.now()).total_seconds()
    assert left > 0, f"the restart took longer than the command's ttl of {TTL} s"
    command.refresh_from_db()
    assert command.status == "pending"
    expired = dashboard.frame(type="command", id=pending["id"], status="expired", timeout=left + 5)
    command.refresh_from_db()
    assert command.sent_at is None and command.finished_at >= command.expires_at
    assert expired["sent"] is None

    # Coming online later, the device is not sent the expired command.
    sensor = Device(hub.mqtt_url, device.id, device.mqtt_password).connect()
    dashboard.frame(type="status", online=True)
    sensor.no_command(within=2)
    sensor.go_offline()


def simulator(hub, owner, devices):
    """`manage.py simulate`, publishing a reading from each of `devices` sensors every 0.1 s."""
    prefix = unique_id("sim")
    process = HubProcess(
        "simulator",
        [sys.executable, "manage.py", "simulate", "--devices", str(devices), "--interval", "0.1",
         "--prefix", prefix, "--owner", owner.username],
        hub.bridge.env,
        hub.workdir / "simulator.log",
    )
    process.start()
    return process, [f"{prefix}-{n:03d}" for n in range(1, devices + 1)]


def test_a_restarted_broker_keeps_the_bridges_queued_readings_and_everyone_reconnects(hub, broker, device, owner):
    sim, sim_ids = simulator(hub, owner, devices=3)
    try:
        wait_until(lambda: Reading.objects.filter(device__in=sim_ids).values("device").distinct().count() == 3,
                   timeout=20, message="readings of every simulated sensor")

        # The bridge is away (stopped cleanly: its session stays at the broker) while a device
        # publishes at QoS 1; the broker queues the readings in the bridge's session.
        hub.bridge.stop()
        sensor = Device(hub.mqtt_url, device.id, device.mqtt_password).connect()
        publisher = Publisher(sensor, 500)
        publisher.run()
        assert stored_count(device) == 0

        bridge_log, sim_log = len(hub.bridge.log()), len(sim.log())
        broker.stop()
        broker.start()
        restarted_ms = int(time.time() * 1000)
        hub.start_bridge()
        assert "session present: True" in hub.bridge.log()[bridge_log:]
        wait_until(lambda: stored_count(device) >= publisher.count, timeout=20, message="the queued readings stored")
        assert stored_ts(device) == publisher.expected()

        # The simulated sensors and the test's own device found the broker again by themselves.
        sim.wait_for_log(r"lost mqtt://.*reconnecting in \d", start=sim_log)
        for sim_id in sim_ids:
            wait_until(lambda: Reading.objects.filter(device_id=sim_id, ts__gt=restarted_ms).exists(),
                       timeout=20, message=f"a reading of {sim_id} sent after the restart")
        wait_until(sensor.client.is_connected, message="the device reconnected")
        assert sensor.disconnects == 1
    finally:
        sim.stop()

    # And with the bridge connected while the broker restarts, it reconnects by itself.
    bridge_log = len(hub.bridge.log())
    broker.restart()
    hub.bridge.wait_for_log(r"lost mqtt://.*reconnecting in", start=bridge_log)
    hub.bridge.wait_for_log(r"connected to mqtt://.*session present: True", start=bridge_log, timeout=20)
    wait_until(lambda: sensor.disconnects == 2 and sensor.client.is_connected(), message="the device reconnected")
    sensor.send_reading({"n": -1}, ts=publisher.start_ts - 1)
    wait_until(lambda: stored_count(device) == publisher.count + 1, message="a reading after the second restart")
    sensor.go_offline()


@contextlib.contextmanager
def database_locked():
    """Another connection holds SQLite's write lock (BEGIN EXCLUSIVE) until the block ends."""
    from django.conf import settings

    holder = sqlite3.connect(settings.DATABASES["default"]["NAME"], isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


@pytest.fixture
def impatient_hub(django_db_setup, redis, broker, tmp_path):
    """A hub whose processes wait only a second for a database lock."""
    (tmp_path / "hub").mkdir()
    yield from running_hub(redis, broker, tmp_path / "hub", db_lock_timeout=1, **FAST_DEVICE)


def test_a_locked_database_holds_readings_unacknowledged_until_they_are_stored(impatient_hub, device):
    hub = impatient_hub
    sensor = Device(hub.mqtt_url, device.id, device.mqtt_password).connect()
    first, second = Publisher(sensor, 200), Publisher(sensor, 200)
    second.start_ts = first.start_ts + first.count

    # Locked for a while: the bridge logs, backs off, retries, and stores all once the lock goes.
    log = len(hub.bridge.log())
    with database_locked():
        first.run()
        hub.bridge.wait_for_log(r"could not store \d+ readings, holding them unacknowledged; retrying in", start=log)
        hub.bridge.wait_for_log(r"retrying in 0\.4 s", start=log)  # backing off: 0.1, 0.2, 0.4 s
        assert stored_count(device) == 0
    wait_until(lambda: stored_count(device) == first.count, message="the held readings stored")
    hub.bridge.wait_for_log(rf"stored {first.count} readings after \d+ failed attempts", start=log)

    # Killed while the lock holds: what it held was never acknowledged, so the broker delivers
    # it again to the restarted bridge.
    log = len(hub.bridge.log())
    with database_locked():
        second.run()
        hub.bridge.wait_for_log(r"could not store \d+ readings", start=log)
        hub.bridge.stop(signal.SIGKILL)
    hub.start_bridge()
    wait_until(lambda: stored_count(device) == first.count + second.count, message="the unacknowledged readings stored")
    assert stored_ts(device) == first.expected() + second.expected()
    sensor.go_offline()


def stored_by(bridge):
    """The readings a bridge stored, from its latest stats line."""
    counts = re.findall(r"stats: received=\d+ stored_readings=(\d+)", bridge.log())
    return int(counts[-1]) if counts else 0


@pytest.fixture
def shared_hub(django_db_setup, redis, broker, tmp_path):
    """Bridges share the load by default (HUB_MQTT_SHARED_GROUP); a lease long enough that no
    survivor drains the killed bridge's session before it is back (tests/test_peer_drain.py)."""
    (tmp_path / "hub").mkdir()
    yield from running_hub(redis, broker, tmp_path / "hub", bridge_lease_seconds=120, **FAST_DEVICE)


def test_two_bridges_share_the_readings_and_one_killed_loses_none(shared_hub, device):
    hub = shared_hub
    other = hub.another_bridge("second-bridge")
    try:
        sensor = Device(hub.mqtt_url, device.id, device.mqtt_password).connect()
        publisher = Publisher(sensor, 2000, pause=0.001)
        publisher.start()
        # Both bridges take their share: the ACL lets bridge accounts subscribe through $share.
        wait_until(lambda: stored_by(other) >= 100 and stored_by(hub.bridge) >= 100, message="both bridges storing")
        other.stop(signal.SIGKILL)
        survivor_at_kill = stored_by(hub.bridge)
        publisher.finish()

        # The survivor carries on. Markers published last arrive after everything the broker
        # routed to it, so once one is stored, all of the survivor's share is stored too.
        markers = Publisher(sensor, 20)
        markers.start_ts = publisher.start_ts + publisher.count
        markers.run()
        wait_until(lambda: Reading.objects.filter(device=device, ts__in=markers.expected()).exists(),
                   message="a marker stored by the surviving bridge")
        assert stored_by(hub.bridge) > survivor_at_kill
        # Mosquitto 2.0 keeps routing a share of the messages to the dead member's persistent
        # session (and keeps those it had in flight there): they wait for it, not lost.
        waiting = publisher.count + markers.count - stored_count(device)
        assert waiting > 0, "Mosquitto handed the dead bridge's share to the survivor: update docs/reliability.md"

        other.start()
        other.wait_for_log(r"connected to mqtt://.*session present: True")
        wait_until(lambda: stored_count(device) == publisher.count + markers.count,
                   message="the restarted bridge storing what waited in its session")
        assert stored_ts(device) == publisher.expected() + markers.expected()
        sensor.go_offline()
    finally:
        other.stop()


@pytest.fixture(params=["pubsub", "core"])
def layered_hub(request, django_db_setup, redis, broker, tmp_path):
    """A hub on each of channels-redis's layers (HUB_CHANNEL_LAYER)."""
    (tmp_path / "hub").mkdir()
    yield from running_hub(redis, broker, tmp_path / "hub", channel_layer=request.param, **FAST_DEVICE)


def test_redis_killed_and_restarted_loses_no_stored_reading_and_dashboards_resync(layered_hub, redis, device, owner):
    hub = layered_hub
    cookie = hub.login(owner.username, PASSWORD)
    single = hub.dashboard(f"ws/devices/{device.id}/", cookie)
    single.frame(type="snapshot")
    fleet = hub.dashboard("ws/fleet/", cookie)
    fleet.send(action="subscribe", devices=[device.id])
    fleet.frame(type="snapshot", device=device.id)
    sensor = Device(hub.mqtt_url, device.id, device.mqtt_password).connect()
    readings = Publisher(sensor, 40)
    publish = iter(range(readings.count))

    def send(count):
        for _ in range(count):
            n = next(publish)
            sensor.send_reading({"n": n}, ts=readings.start_ts + n)

    send(1)
    for dashboard in (single, fleet):
        dashboard.frame(type="readings", device=device.id)

    web_log, bridge_log = len(hub.web.log()), len(hub.bridge.log())
    redis.kill()
    send(20)
    wait_until(lambda: stored_count(device) == 21, message="readings stored while Redis is down")
    hub.bridge.wait_for_log(r"channel layer unavailable, live frames are being lost", start=bridge_log)
    hub.web.wait_for_log(r"live relay: the live stream is broken", start=web_log)

    redis.start()
    hub.web.wait_for_log(r"live relay: the live stream is back after [\d.]+ s; \d+ sockets resync", start=web_log)
    for dashboard in (single, fleet):
        assert dashboard.frame(type="resync")["devices"] == [device.id]
        snapshot = dashboard.frame(type="snapshot", device=device.id)
        assert snapshot["latest"]["n"] == {"ts": readings.start_ts + 20, "value": 20}

    # The bridge finds Redis again too: live frames flow.
    send(1)
    for dashboard in (single, fleet):
        frame = dashboard.frame(type="readings", device=device.id)
        assert frame["items"][0]["values"] == {"n": 21} and frame["seq"] == snapshot["seq"] + 1
    hub.bridge.wait_for_log(r"channel layer is back", start=bridge_log)
    assert stored_ts(device) == readings.expected()[:22]
    sensor.go_offline()


@pytest.fixture
def flood_hub(django_db_setup, redis, broker, tmp_path):
    """A hub that lets a device send as many bytes a second as it can, and holds at most 50
    frames for a socket (still far more than arrive between two sends to a reading client)."""
    (tmp_path / "hub").mkdir()
    yield from running_hub(redis, broker, tmp_path / "hub", device_max_bytes_per_second=100_000_000,
                           ws_max_pending_frames=50, **FAST_DEVICE)


def test_the_server_stops_sending_to_a_dashboard_that_stops_reading_and_tells_it_what_it_missed(flood_hub, device, owner):
    hub = flood_hub
    stalled = hub.stalled_dashboard(f"ws/devices/{device.id}/", hub.login(owner.username, PASSWORD))
    first_seq = next(stalled.frames())["seq"]
    sensor = Device(hub.mqtt_url, device.id, device.mqtt_password).connect()
    # From here until every reading is stored the dashboard reads nothing. Once the kernel's
    # buffers are full, daphne's would grow without end; instead the socket's sender waits
    # and its outbox drops the oldest frames.
    messages, samples, text = 30000, 1, "x" * 250
    start_ts = int(time.time() * 1000) - 3_600_000
    for n in range(messages):
        batch = [{"ts": start_ts + n * samples + k, "values": {"s": text}} for k in range(samples)]
        sensor.publish(sensor.topic("telemetry"), orjson.dumps(batch))
    flood_bytes = messages * len(orjson.dumps(batch))
    wait_until(lambda: stored_count(device) == messages * samples, timeout=60, message="every reading stored")
    last_seq = RegisteredDevice.objects.get(pk=device.pk).seq
    hub.bridge.wait_for_log(rf"stats: received={messages + 1} stored_readings={messages * samples} published={last_seq - first_seq + 1}")

    # It reads again: every frame since the snapshot (the device's status, then its readings)
    # is either received or counted as dropped.
    received, dropped, seqs = 0, 0, []
    for frame in stalled.frames():
        if frame["type"] == "dropped":
            dropped += frame["devices"][device.id]
            continue
        received += 1
        if frame["type"] == "readings":
            seqs.append(frame["seq"])
            if frame["seq"] == last_seq:
                break
    print(f"{flood_bytes / 2**20:.1f} MiB in {last_seq - first_seq} frames to a stalled dashboard: "
          f"{received} frames received, {dropped} dropped")
    assert seqs[-1] == last_seq, f"the last frame never came: {seqs[-5:]}"
    # Without the write gate daphne queues everything and drops nothing.
    assert dropped > 0 and received + dropped == 1 + last_seq - first_seq
    stalled.close()
    sensor.go_offline()
