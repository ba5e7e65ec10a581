"""One subscription to the live stream per web process, fanned out to its sockets in-process.

Each live event crosses the channel layer once per process, into the relay's channel; the
relay hands each frame to the sockets watching its device by a plain method call. Delivering
events to every socket through the layer instead costs a message decode and a consumer
dispatch per socket per event: with 200 fleet dashboards that capped a web process near
14,000 readings/s delivered (docs/performance.md).
"""
import asyncio
import logging
import weakref
from collections import defaultdict

from telemetry.events import LIVE_GROUP, RELAY_CHANNEL_PREFIX

logger = logging.getLogger("telemetry.relay")

# Group membership on channels-redis's core layer expires (a day by default): renew it.
REJOIN_SECONDS = 600

_relays = weakref.WeakKeyDictionary()  # event loop -> its relay


def relay_for(channel_layer):
    """The running event loop's relay, started on first use."""
    loop = asyncio.get_running_loop()
    relay = _relays.get(loop)
    if relay is None:
        relay = _relays[loop] = LiveRelay(channel_layer)
    return relay


class LiveRelay:
    def __init__(self, channel_layer):
        self.channel_layer = channel_layer
        self.watchers = defaultdict(set)  # device id -> consumers watching it
        self._tasks = []

    async def watch(self, consumer, device_ids):
        """From now on, `consumer.live_frame()` gets the live frames of these devices."""
        for device_id in device_ids:
            self.watchers[device_id].add(consumer)
        if not self._tasks:
            channel = await self.channel_layer.new_channel(RELAY_CHANNEL_PREFIX)
            await self.channel_layer.group_add(LIVE_GROUP, channel)
            self._tasks = [
                asyncio.create_task(self._relay_forever(channel)),
                asyncio.create_task(self._rejoin_forever(channel)),
            ]

    def unwatch(self, consumer, device_ids):
        for device_id in device_ids:
            consumers = self.watchers.get(device_id)
            if consumers is not None:
                consumers.discard(consumer)
                if not consumers:
                    del self.watchers[device_id]

    def dispatch(self, message):
        watchers = self.watchers
        if message["type"] == "live.readings":
            for device_id, seq, text in message["frames"]:
                for consumer in watchers.get(device_id, ()):
                    consumer.live_frame(device_id, text, seq)
        else:
            device_id = message["device"]
            for consumer in watchers.get(device_id, ()):
                consumer.live_frame(device_id, message["frame"])

    async def _relay_forever(self, channel):
        while True:
            try:
                message = await self.channel_layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("live relay: receiving from the channel layer failed, retrying")
                await asyncio.sleep(1)
                continue
            try:
                self.dispatch(message)
            except Exception:
                logger.exception("live relay: could not dispatch a %r message", message.get("type"))

    async def _rejoin_forever(self, channel):
        while True:
            await asyncio.sleep(REJOIN_SECONDS)
            try:
                await self.channel_layer.group_add(LIVE_GROUP, channel)
            except Exception:
                logger.exception("live relay: renewing the group membership failed")
