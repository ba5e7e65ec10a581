"""bridge.mqtt.MqttConnection pausing its reads, against a real Mosquitto: what the broker sends
meanwhile waits (in the socket and the broker's queue) and arrives once reading resumes, and
the connection outlives a pause longer than its keepalive."""
import asyncio
import time

import pytest

from bridge.mqtt import MqttConnection, parse_mqtt_url
from tests.live import TIMEOUT, Gateway
# broker: a fixture, a Mosquitto of the test's own with a bridge login (WATCH) and a gateway's (LOAD).
from tests.test_bench_publisher import LOAD, PASSWORD, WATCH, broker  # noqa: F401

pytestmark = pytest.mark.live

KEEPALIVE = 4  # seconds: paho would give up on an unread PINGRESP a keepalive after its ping


async def wait_for(condition, message):
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        await asyncio.sleep(0.05)


async def test_a_paused_connection_keeps_its_messages_waiting_and_outlives_its_keepalive(broker):
    received, connections = [], []
    connection = MqttConnection(
        parse_mqtt_url(broker.login_url(WATCH, PASSWORD)), WATCH, clean_session=False,
        subscriptions=[("devices/+/telemetry", 1)], on_message=lambda message: received.append(message.payload),
        on_connected=connections.append,
    )
    connection.keepalive = KEEPALIVE
    running = asyncio.create_task(connection.run())
    gateway = await asyncio.to_thread(Gateway(broker.url, LOAD, PASSWORD).connect)
    try:
        await wait_for(lambda: connections, "the connection")
        while not received:  # until the subscription is in place
            await asyncio.to_thread(gateway.publish, "devices/d1/telemetry", b"ping")
            await asyncio.sleep(0.1)

        connection.pause_reading()
        for n in range(20):
            await asyncio.to_thread(gateway.publish, "devices/d1/telemetry", str(n).encode())
        # Paused for more than two keepalives: paho alone would have closed the connection.
        paused_until = time.monotonic() + 2.5 * KEEPALIVE
        while time.monotonic() < paused_until:
            assert connection.connected.is_set() and set(received) == {b"ping"}
            await asyncio.sleep(0.5)

        connection.resume_reading()
        await wait_for(lambda: len(received) - received.count(b"ping") == 20, "the messages that waited")
        assert [payload for payload in received if payload != b"ping"] == [str(n).encode() for n in range(20)]
        assert connections == [False]  # one connection throughout: the first, no session before it
    finally:
        gateway.disconnect()
        await connection.disconnect()
        await running
