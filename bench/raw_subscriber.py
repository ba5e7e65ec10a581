"""The raw ceiling: a bare paho subscriber on the same broker that only parses each reading.

It takes the readings queued for its persistent session while it was away, and reports how
fast it drained them. python -m bench.raw_subscriber --url ... --client-id ... --expect N
First run with --expect 0 to create the session."""
import argparse
import json
import threading
import time

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bridge.mqtt import parse_mqtt_url


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args()
    address = parse_mqtt_url(args.url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=args.client_id, clean_session=False, protocol=mqtt.MQTTv311)
    client.username_pw_set(address.username, address.password)
    client.max_inflight_messages_set(1000)
    done = threading.Event()
    state = {"count": 0, "first": None, "last": None}

    def on_connect(client, userdata, flags, reason_code, properties):
        client.subscribe("devices/+/telemetry", qos=1)

    def on_subscribe(client, userdata, mid, reason_codes, properties):
        if args.expect == 0:
            done.set()  # the broker now keeps a session for this client id

    def on_message(client, userdata, message):
        document = orjson.loads(message.payload)
        if document["values"]:
            now = time.time()
            state["first"] = state["first"] or now
            state["last"] = now
            state["count"] += 1
            if state["count"] >= args.expect:
                done.set()

    client.on_connect = on_connect
    client.on_message = on_message
    client.on_subscribe = on_subscribe
    client.connect(address.host, address.port)
    client.loop_start()
    done.wait(args.timeout)
    client.disconnect()
    client.loop_stop()
    print(json.dumps(state))


if __name__ == "__main__":
    main()
