"""A load generator: publishes 3-value readings for many devices at a fixed rate, QoS 1.

Each reading carries its publish time (`pub`, epoch seconds) so receivers can measure latency.
One MQTT connection publishes for all of its devices: the broker and the hub see the same
topics and payloads as from separate devices, at a fraction of the generator's cost.

python -m bench.publisher --url mqtt://127.0.0.1:1883 --first 0 --devices 100 --rate 1000 --seconds 10
Prints {"published": N, "started": t, "finished": t} as JSON."""
import argparse
import json
import random
import threading
import time

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.prepare import device_ids
from bridge.mqtt import parse_mqtt_url

TICK = 0.005


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
    address = parse_mqtt_url(args.url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.username_pw_set(address.username, address.password)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    connected = threading.Event()
    client.on_connect = lambda *_: connected.set()
    client.connect(address.host, address.port)
    client.loop_start()
    if not connected.wait(10):
        raise SystemExit(f"cannot connect to {address}")
    topics = [f"devices/{device_id}/telemetry" for device_id in device_ids(args.first + args.devices)[args.first:]]
    total = int(args.rate * args.seconds)
    last_ts = [0] * len(topics)  # a device never sends two readings with the same ts
    started = time.time()
    last = None
    for number in range(total):
        due = started + number / args.rate
        delay = due - time.time()
        if delay > TICK:
            time.sleep(delay)
        now = time.time()
        device = number % len(topics)
        last_ts[device] = max(int(now * 1000), last_ts[device] + 1)
        reading = {"ts": last_ts[device], "values": {"temp": round(random.uniform(15, 25), 2), "hum": number % 100, "pub": now}}
        last = client.publish(topics[device], orjson.dumps(reading), qos=args.qos)
    finished = time.time()
    if last is not None:
        last.wait_for_publish(60)
    client.disconnect()
    client.loop_stop()
    return {"published": total, "started": started, "finished": finished}


if __name__ == "__main__":
    main()
