"""The naive bridge, as the Channels tutorial would write it: one group_send per reading.

It stores nothing, which only flatters it. Like bench.raw_subscriber it drains the readings
queued for its persistent session and reports how fast.
python -m bench.naive_bridge --url ... --client-id ... --expect N   (in the hub's environment)"""
import argparse
import asyncio
import json
import os
import time

import django
import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


async def drain(args):
    from channels.layers import get_channel_layer

    from bridge.mqtt import parse_mqtt_url

    layer = get_channel_layer()
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()
    subscribed = asyncio.Event()
    address = parse_mqtt_url(args.url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=args.client_id, clean_session=False, protocol=mqtt.MQTTv311)
    client.username_pw_set(address.username, address.password)
    client.max_inflight_messages_set(1000)
    client.on_connect = lambda client, *_: client.subscribe("devices/+/telemetry", qos=1)
    client.on_subscribe = lambda *_: loop.call_soon_threadsafe(subscribed.set)
    client.on_message = lambda client, userdata, message: loop.call_soon_threadsafe(
        queue.put_nowait, (message.topic, message.payload)
    )
    client.connect(address.host, address.port)
    client.loop_start()
    await subscribed.wait()
    state = {"count": 0, "first": None, "last": None}
    try:
        while state["count"] < args.expect:
            topic, payload = await asyncio.wait_for(queue.get(), args.timeout)
            device_id = topic.split("/")[1]
            reading = orjson.loads(payload)
            await layer.group_send(f"device.{device_id}", {"type": "device.reading", "reading": reading})
            now = time.time()
            state["first"] = state["first"] or now
            state["last"] = now
            state["count"] += 1
    except TimeoutError:
        pass
    client.disconnect()
    client.loop_stop()
    return state


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=30, help="give up after this long without a message")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
    django.setup()
    print(json.dumps(asyncio.run(drain(args))))


if __name__ == "__main__":
    main()
