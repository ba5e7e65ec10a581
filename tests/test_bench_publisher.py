"""The benchmark's load generator (bench.publisher, its own minimal MQTT client) against a real
Mosquitto, with the hub's broker logins and a paho subscriber counting what arrives."""
import json
import subprocess
import sys
import threading
from collections import defaultdict

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bench.prepare import device_ids
from devices.broker_auth import render, write_files
from devices.credentials import ensure_account
from devices.models import BrokerAccount
from tests.live import ROOT, TIMEOUT, stop_client

# The subscriber takes up to 70,000 QoS 1 readings before the marker: seconds on a loaded machine.
MARKER_TIMEOUT = 60
from tests.servers import MosquittoServer

LOAD, WATCH, PASSWORD = "test.load", "test.watch", "load-password"
MARKER_DEVICE = 99  # the one reading of a second run, after everything the first run sent


@pytest.fixture
def broker(db, tmp_path):
    """A throwaway Mosquitto with a gateway login (the generator's) and a bridge login (the subscriber's)."""
    ensure_account(LOAD, PASSWORD, BrokerAccount.Role.GATEWAY)
    ensure_account(WATCH, PASSWORD, BrokerAccount.Role.BRIDGE)
    server = MosquittoServer(tmpdir=tmp_path)
    write_files(server.auth_dir, *render())
    server.start()
    yield server
    server.stop()


class Subscriber:
    """A paho client receiving every device's telemetry at QoS 1, until the marker device's reading."""

    def __init__(self, broker):
        self.received = []  # (device id, payload) in arrival order
        self.subscribed = threading.Event()
        self.marked = threading.Event()
        self.marker_topic = f"devices/{device_ids(MARKER_DEVICE + 1)[-1]}/telemetry"
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=WATCH, protocol=mqtt.MQTTv311)
        self.client.username_pw_set(WATCH, PASSWORD)
        self.client.on_connect = lambda client, *_: client.subscribe("devices/+/telemetry", qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        if not self.subscribed.wait(TIMEOUT):
            raise AssertionError("the subscriber could not subscribe")

    def _on_message(self, client, userdata, message):
        if message.topic == self.marker_topic:
            self.marked.set()
        else:
            self.received.append((message.topic.split("/")[1], orjson.loads(message.payload)))

    def stop(self):
        stop_client(self.client)


@pytest.fixture
def subscriber(broker):
    subscriber = Subscriber(broker)
    yield subscriber
    subscriber.stop()


def run_publisher(broker, *args, password=PASSWORD):
    return subprocess.run(
        [sys.executable, "-m", "bench.publisher", "--url", broker.login_url(LOAD, password), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )


def publish(broker, *args):
    result = run_publisher(broker, *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def received_after_all_published(broker, subscriber):
    """Everything the subscriber received once the broker has routed all that was published: a
    second run's one reading, sent after the first run's, arrives after all of them."""
    publish(broker, "--first", str(MARKER_DEVICE), "--devices", "1", "--rate", "10", "--seconds", "0.1")
    assert subscriber.marked.wait(MARKER_TIMEOUT), "the marker reading did not arrive"
    return subscriber.received


# 70,000 readings at QoS 1 take every packet id, 1 to 65,535, and then some again.
@pytest.mark.parametrize("qos, rate, seconds", [(1, 2000, 1), (0, 2000, 1), (1, 20_000, 3.5)], ids=["qos1", "qos0", "qos1-ids-wrap"])
def test_every_reading_arrives_once_and_each_devices_ts_increases(broker, subscriber, qos, rate, seconds):
    devices, count = 5, int(rate * seconds)
    run = publish(
        broker, "--first", "3", "--devices", str(devices), "--rate", str(rate), "--seconds", str(seconds), "--qos", str(qos)
    )
    received = received_after_all_published(broker, subscriber)

    assert run["published"] == count and run["started"] <= run["finished"]
    assert len(received) == count
    by_device = defaultdict(list)
    for device_id, reading in received:
        assert set(reading) == {"ts", "values"} and set(reading["values"]) == {"temp", "hum", "pub"}
        assert 15 <= reading["values"]["temp"] <= 25
        assert run["started"] <= reading["values"]["pub"] <= run["finished"]
        by_device[device_id].append(reading["ts"])
    assert set(by_device) == set(device_ids(3 + devices)[3:])
    for stamps in by_device.values():
        assert len(stamps) == count // devices
        assert all(earlier < later for earlier, later in zip(stamps, stamps[1:]))


def test_a_wrong_password_fails_the_run_with_the_brokers_reason(broker):
    result = run_publisher(broker, "--devices", "1", "--rate", "10", "--seconds", "1", password="wrong")
    assert result.returncode != 0
    # Mosquitto answers 5, "not authorized", where MQTT 3.1.1 also allows 4.
    assert "the broker refused the connection: CONNACK return code" in result.stderr
    assert "(not authorized)" in result.stderr or "(bad user name or password)" in result.stderr
    assert result.stdout == ""


def test_the_run_fails_when_the_broker_goes_away(broker, subscriber):
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.publisher", "--url", broker.login_url(LOAD, PASSWORD),
         "--devices", "1", "--rate", "100", "--seconds", "60"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        first = threading.Event()
        subscriber.client.on_message = lambda *_: first.set()
        assert first.wait(TIMEOUT), "the publisher published nothing"
        broker.kill()
        out, err = process.communicate(timeout=TIMEOUT)
    finally:
        process.kill()
    assert process.returncode != 0 and out == ""
    assert "the broker closed the connection" in err
