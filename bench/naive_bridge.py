"""The naive bridge, as the Channels tutorial would write it: for each reading, one ORM insert
and one group_send to the device's group on channels-redis's core layer.

Its dashboards (bench.naive_asgi) listen in those groups while it runs. It stores into its own
database (HUB_DATABASE_URL), so that our bridge later drains the same readings into an empty
one. Like bench.raw_subscriber it drains the readings queued for its persistent session and
reports how fast; --seconds caps the drain, as it is slow.
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


def store_reading(device_id, reading):
    """One INSERT per reading: our schema keeps a row per value, the tutorial a row per reading."""
    from telemetry.models import Reading, value_columns

    Reading.objects.bulk_create([
        Reading(device_id=device_id, key=key, ts=reading["ts"], **dict(zip(("kind", "num", "text"), value_columns(value))))
        for key, value in reading["values"].items()
    ])


async def drain(args):
    from channels.db import database_sync_to_async
    from channels.layers import get_channel_layer
    from channels_redis.core import RedisChannelLayer

    from bench.naive_asgi import naive_group
    from bridge.mqtt import parse_mqtt_url

    layer = get_channel_layer()
    if not isinstance(layer, RedisChannelLayer):
        raise SystemExit(f"the naive bridge runs on channels-redis's core layer, not {type(layer).__name__}")
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
    deadline = None
    try:
        while state["count"] < args.expect and (deadline is None or time.monotonic() < deadline):
            topic, payload = await asyncio.wait_for(queue.get(), args.timeout)
            device_id = topic.split("/")[1]
            reading = orjson.loads(payload)
            await database_sync_to_async(store_reading)(device_id, reading)
            await layer.group_send(naive_group(device_id), {"type": "device.reading", "reading": reading})
            now = time.time()
            if state["first"] is None:
                state["first"] = now
                deadline = time.monotonic() + args.seconds
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
    parser.add_argument("--seconds", type=float, default=60, help="stop draining after this long")
    parser.add_argument("--timeout", type=float, default=30, help="give up after this long without a message")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
    django.setup()
    print(json.dumps(asyncio.run(drain(args))))


if __name__ == "__main__":
    main()
