"""A bridge killed for good holds no share hostage: three real bridges on one shared group, one
SIGKILLed while a device publishes 2,000 readings/s, and a survivor drains the dead bridge's
broker session (bridge.drain) so that every reading is stored exactly once within 30 s of the
kill. docs/reliability.md, "A bridge that dies for good"."""
import re
import signal
import threading
import time

import orjson
import psycopg
import pytest
from django.conf import settings
from django.db import connection

from telemetry.models import Reading
from tests.live import STARTUP_TIMEOUT, Device, HubProcess, LiveHub, database_url, unique_id, wait_until

pytestmark = [pytest.mark.live, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

RATE = 2000
# Readings the device publishes: five seconds' worth, the bridge killed about two seconds in.
COUNT = 10_000
DRAINED_WITHIN = 30


class PacedPublisher(threading.Thread):
    """Publishes `count` readings at QoS 1, one message each with its own device-set ts, `rate` a
    second (paced by the clock, not by acknowledgements)."""

    def __init__(self, sensor, count, rate):
        super().__init__(daemon=True)
        self.sensor, self.count, self.rate = sensor, count, rate
        self.start_ts = int(time.time() * 1000) - 3_600_000
        self.published = 0

    def expected(self):
        return [self.start_ts + n for n in range(self.count)]

    def run(self):
        started, last = time.monotonic(), None
        topic = self.sensor.topic("telemetry")
        for n in range(self.count):
            ahead = started + n / self.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
            last = self.sensor.client.publish(topic, orjson.dumps({"ts": self.start_ts + n, "values": {"n": n}}), qos=1)
            self.published += 1
        last.wait_for_publish(30)

    def finish(self, timeout=60):
        self.join(timeout)
        assert not self.is_alive(), f"published only {self.published} of {self.count}"


def stored_by(bridge, start=0):
    """The readings a bridge stored, from its latest stats line (every second in tests) after log
    offset `start`."""
    counts = re.findall(r"stats: received=\d+ stored_readings=(\d+)", bridge.log()[start:])
    return int(counts[-1]) if counts else 0


def stored_ts(device):
    return sorted(Reading.objects.filter(device=device).values_list("ts", flat=True))



def bridge_only(redis_server, mosquitto_server, tmp_path, **settings_):
    """A hub's bridge with these HUB_* settings, without its web process (nothing here needs
    one). The shared group is on by default."""
    hub = LiveHub(settings.DATABASES["default"], redis_server.url, mosquitto_server, tmp_path, **settings_)
    try:
        hub.start_bridge()
        yield hub
    finally:
        hub.stop()


@pytest.fixture
def hub(django_db_setup, redis_server, mosquitto_server, tmp_path):
    """Each reading is a message: let the device send fast."""
    yield from bridge_only(redis_server, mosquitto_server, tmp_path, device_max_messages_per_second=100_000)


def another_bridge(hub, name):
    """A bridge of the same hub: the same settings, but its own HUB_BRIDGE_ID, from which it
    derives its client id and its broker account (registered by itself)."""
    bridge_id = unique_id(name)
    process = HubProcess(name, hub.bridge.args, {**hub.bridge.env, "HUB_BRIDGE_ID": bridge_id},
                         hub.workdir / f"{name}.log")
    process.bridge_id = bridge_id
    process.start()
    try:
        process.wait_for_log(r"connected to mqtt://", timeout=STARTUP_TIMEOUT)
    except AssertionError:
        process.stop()
        raise
    return process


def test_a_bridge_killed_for_good_has_its_share_drained_by_one_survivor_and_stored_once(hub, device):
    doomed = another_bridge(hub, "doomed")
    third = None
    try:
        third = another_bridge(hub, "third")
        bridges = [hub.bridge, doomed, third]
        sensor = Device(hub.mqtt_url, device.id, device.mqtt_password)
        sensor.client.max_inflight_messages_set(1000)  # paho's 20 would pace the device by round trips
        sensor.connect()
        publisher = PacedPublisher(sensor, COUNT, RATE)
        publisher.start()
        wait_until(lambda: all(stored_by(bridge) >= 100 for bridge in bridges), message="all three bridges storing")
        doomed.stop(signal.SIGKILL)
        killed_at = time.monotonic()
        assert publisher.published < publisher.count, "the bridge must die while the device publishes"
        publisher.finish()

        # Mosquitto routes the dead bridge's share to its session until a survivor drains it.
        wait_until(lambda: len(stored_ts(device)) >= COUNT, timeout=DRAINED_WITHIN - (time.monotonic() - killed_at),
                   interval=0.5, message=f"every reading stored within {DRAINED_WITHIN} s of the kill")
        assert stored_ts(device) == publisher.expected()  # each once

        # The survivor that took the lease over ends the session once it has been quiet a while.
        def drained_by():
            pattern = rf"drained bridge {doomed.bridge_id}'s session in [\d.]+ s: (\d+) messages"
            return [int(match.group(1)) for bridge in (hub.bridge, third) if (match := re.search(pattern, bridge.log()))]

        messages = wait_until(drained_by, message="a survivor to end the dead bridge's session")
        assert len(drained_by()) == 1 and messages[0] > 0, "exactly one survivor drains the dead bridge"

        # The dead bridge comes back: its session was ended, so it starts afresh, and it takes
        # its share again.
        start = len(doomed.log())
        doomed.start()
        doomed.wait_for_log(r"connected to mqtt://.*session present: False", timeout=STARTUP_TIMEOUT, start=start)
        more = PacedPublisher(sensor, 3000, RATE)
        more.start_ts = publisher.start_ts + COUNT
        more.start()
        more.finish()
        wait_until(lambda: len(stored_ts(device)) >= COUNT + more.count, interval=0.5,
                   message="the readings published after it came back stored")
        assert stored_ts(device) == publisher.expected() + more.expected()
        wait_until(lambda: stored_by(doomed, start) > 0, message="the returned bridge storing its share")
        sensor.go_offline()
    finally:
        for bridge in (doomed, third):
            if bridge is not None:
                bridge.stop()


@pytest.fixture
def short_lease_hub(django_db_setup, redis_server, mosquitto_server, tmp_path):
    """A hub whose bridges' leases lapse 3 s after their last renewal."""
    yield from bridge_only(redis_server, mosquitto_server, tmp_path, bridge_lease_seconds=3)


def test_a_bridge_slow_to_stop_keeps_its_lease_until_it_has_left_the_broker(short_lease_hub, device):
    """A peer that took a stopping bridge's lease would connect as its session and cut it off
    before it acknowledged its last flush (CI saw it: the stopping bridge reconnected, and the
    two cut each other off until the bridge was killed). Here the stop waits for a flush that
    waits for the device's row, locked by the test, for twice the lease."""
    if connection.vendor != "postgresql":
        pytest.skip("holds one row locked: SQLite locks the whole database")
    hub, lease = short_lease_hub, 3
    sensor = Device(hub.mqtt_url, device.id, device.mqtt_password).connect()
    ts = int(time.time() * 1000)
    with psycopg.connect(database_url(settings.DATABASES["default"])) as locker:
        locker.execute("SELECT 1 FROM devices_device WHERE id = %s FOR UPDATE", [device.id])
        for n in range(20):
            sensor.send_reading({"n": n}, ts=ts + n)
        wait_until(lambda: re.search(r"stats: .* held=20 ", hub.bridge.log()), message="the bridge holding the readings")
        peer = hub.another_bridge("peer")  # after: the shared group would hand it some
        stopping = len(hub.bridge.log())
        hub.bridge.process.send_signal(signal.SIGTERM)
        hub.bridge.wait_for_log(r"bridge stopping", start=stopping)
        ends = time.monotonic() + 2 * lease + 1
        while time.monotonic() < ends:
            assert "has not renewed its lease" not in peer.log(), "the peer took the stopping bridge's lease"
            assert hub.bridge.process.poll() is None, "the bridge stopped before its flush could"
            time.sleep(0.2)
    hub.bridge.process.wait(30)
    assert stored_ts(device) == [ts + n for n in range(20)]
    # Once the bridge has left the broker its lease lapses, and the peer rightly drains its
    # session: on a slow machine that came before the process had exited. Not before it left.
    (stopped_at,) = re.findall(r"^(\S+ \S+) INFO bridge: bridge stopped$", hub.bridge.log(), re.MULTILINE)
    taken_at = re.findall(r"^(\S+ \S+) WARNING bridge: .* has not renewed its lease", peer.log(), re.MULTILINE)
    assert all(taken > stopped_at for taken in taken_at), (stopped_at, taken_at)
    assert "reconnecting" not in hub.bridge.log()[stopping:]
    sensor.go_offline()
