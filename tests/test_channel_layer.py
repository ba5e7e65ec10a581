"""The channel layer the settings build, on channels-redis's core layer: a web process's live
relay has room for more than channels-redis's default 100 messages, and idle receives survive
redis-py's read timeout. tests/test_core_layer_hub.py runs the whole hub on it."""
import asyncio

from channels_redis.core import RedisChannelLayer

from hub.settings import _channel_layers
from telemetry.events import LIVE_GROUP


def core_layer(monkeypatch, redis_url, capacity):
    monkeypatch.setenv("HUB_REDIS_URL", redis_url)
    monkeypatch.setenv("HUB_CHANNEL_LAYER", "core")
    monkeypatch.setenv("HUB_CHANNEL_CAPACITY", str(capacity))
    config = _channel_layers()["default"]
    assert config["BACKEND"] == "channels_redis.core.RedisChannelLayer"
    return RedisChannelLayer(**config["CONFIG"])


async def test_on_the_core_layer_a_relay_that_falls_behind_keeps_past_the_default_capacity(redis_server, monkeypatch):
    layer = core_layer(monkeypatch, redis_server.url, capacity=300)
    relay = await layer.new_channel()
    await layer.group_add(LIVE_GROUP, relay)
    # 250 flushes sent before the relay reads any: the default capacity (100) would drop 150.
    for number in range(250):
        await layer.group_send(LIVE_GROUP, {"type": "live.readings", "n": number})
    relayed = [(await asyncio.wait_for(layer.receive(relay), 10))["n"] for _ in range(250)]
    assert relayed == list(range(250))
    await layer.flush()
    await layer.close_pools()


async def test_on_the_core_layer_a_receive_outlasts_an_idle_blocking_pop(redis_server, monkeypatch):
    """channels_redis pops with a 5 s timeout; redis-py 8 timed the read out at 5 s as well."""
    layer = core_layer(monkeypatch, redis_server.url, capacity=10)
    channel = await layer.new_channel()
    receiving = asyncio.create_task(layer.receive(channel))
    await asyncio.sleep(layer.brpop_timeout + 1)  # idle through one whole blocking pop
    await layer.send(channel, {"type": "live.readings", "n": 1})
    assert (await asyncio.wait_for(receiving, 10))["n"] == 1
    await layer.flush()
    await layer.close_pools()
