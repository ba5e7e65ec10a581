"""A load generator: publishes 3-value readings for many devices at a fixed rate, QoS 1.

Each reading carries its publish time (`pub`, epoch seconds) so receivers can measure latency.
One MQTT connection publishes for all of its devices: the broker and the hub see the same
topics and payloads as from separate devices, at a fraction of the generator's cost.

python -m bench.publisher --url mqtt://127.0.0.1:1883 --first 0 --devices 100 --rate 1000 --seconds 10
Prints {"published": N, "started": t, "finished": t} as JSON."""
import argparse
import json
import random
import time

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.prepare import device_ids
from bridge.mqtt import parse_mqtt_url

TICK = 0.005
# Read the broker's acknowledgements at least this often, in messages, when behind schedule.
ACKS_EVERY = 100


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--first", type=int, default=0, help="index of the first device")
    parser.add_argument("--devices", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True, help="readings per second, all devices together")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--qos", type=int, default=1)
    args = parser.parse_args()
    print(json.dumps(publish(args)))


def publish(args):
    """Publishes on this thread, reading the broker's acknowledgements between publishes: paho's
    network thread fought the publishing thread for the GIL and fell behind at 5,000/s, and
    readings stamped with their publish time then queued inside the generator."""
    address = parse_mqtt_url(args.url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.username_pw_set(address.username, address.password)
    # No window of our own: with one full, paho rescans every message in flight on each
    # acknowledgement. The broker takes QoS 1 messages as fast as they come.
    client.max_inflight_messages_set(0)
    client.max_queued_messages_set(0)
    acknowledged = [0]
    client.on_publish = lambda *_: acknowledged.__setitem__(0, acknowledged[0] + 1)
    client.connect(address.host, address.port)
    deadline = time.monotonic() + 10
    while not client.is_connected():
        if time.monotonic() > deadline:
            raise SystemExit(f"cannot connect to {address}")
        client.loop(0.1)
    topics = [f"devices/{device_id}/telemetry" for device_id in device_ids(args.first + args.devices)[args.first:]]
    total = int(args.rate * args.seconds)
    last_ts = [0] * len(topics)  # a device never sends two readings with the same ts
    started = time.time()
    for number in range(total):
        due = started + number / args.rate
        while (delay := due - time.time()) > TICK:
            client.loop(delay)
        if number % ACKS_EVERY == 0:
            client.loop(0)
        now = time.time()
        device = number % len(topics)
        last_ts[device] = max(int(now * 1000), last_ts[device] + 1)
        reading = {"ts": last_ts[device], "values": {"temp": round(random.uniform(15, 25), 2), "hum": number % 100, "pub": now}}
        info = client.publish(topics[device], orjson.dumps(reading), qos=args.qos)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise SystemExit(f"publish {number} of {total} failed: {mqtt.error_string(info.rc)}")
    finished = time.time()
    deadline = time.monotonic() + 60
    while client.want_write() or (args.qos and acknowledged[0] < total):
        if time.monotonic() > deadline:
            raise SystemExit("the broker did not acknowledge every reading within 60 s")
        client.loop(0.1)
    client.disconnect()
    return {"published": total, "started": started, "finished": finished}


if __name__ == "__main__":
    main()
