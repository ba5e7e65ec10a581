"""Live events from the bridge to the web processes, sent beside the bridge's work, not in it.

Storing readings must not wait for the channel layer: while Redis is slow or away, events
queue here (a bounded number; the oldest give way) and one task sends them in order. The
channel layer is at-most-once anyway: dashboards see a jump in `seq`, or a `resync` from
their web process's relay, and refetch (docs/reliability.md).
"""
import asyncio
import logging
from collections import deque

from redis.exceptions import ConnectionError as RedisConnectionError

from bridge.metrics import count_command_change

logger = logging.getLogger("bridge")

# An event the layer has not taken within this time is given up.
SEND_TIMEOUT_SECONDS = 1.0
# Events waiting while the layer is away; past this the oldest are dropped.
MAX_WAITING = 1000


class LiveSender:
    def __init__(self, channel_layer, group, counts):
        self.channel_layer = channel_layer
        self.group = group
        self.counts = counts  # "published" and "live_failed" are counted here
        self._waiting = deque()
        self._ready = asyncio.Event()
        self._failing = False
        self._closing = False

    @property
    def closing(self):
        """True once close() was called: run() then returns when what waits is sent."""
        return self._closing

    def publish(self, event):
        """Queues an event for the group; returns at once."""
        count_command_change(event)
        if len(self._waiting) >= MAX_WAITING:
            self._waiting.popleft()
            self.counts["live_failed"] += 1
        self._waiting.append(event)
        self._ready.set()

    async def run(self):
        """Sends events as they come, until close()."""
        while not self._closing:
            await self._ready.wait()
            self._ready.clear()
            while self._waiting:
                await self._send(self._waiting.popleft())

    async def close(self, task, timeout):
        """Has `task`, the one running run(), send what waits and end, for at most `timeout` s.

        Not a plain cancel: redis-py may swallow a cancellation that lands in a command."""
        self._closing = True
        self._ready.set()
        await asyncio.wait([task], timeout=timeout)
        if not task.done():
            logger.warning("gave up %d live events on the way out", len(self._waiting))
            task.cancel()

    async def _send(self, event):
        try:
            async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
                try:
                    await self.channel_layer.group_send(self.group, event)
                except RedisConnectionError:
                    # After a Redis restart the first command on each pooled connection fails;
                    # the next one connects afresh.
                    await self.channel_layer.group_send(self.group, event)
        except Exception as exc:
            self.counts["live_failed"] += 1
            if not self._failing:
                logger.error("channel layer unavailable, live frames are being lost: %r", exc)
                self._failing = True
            return
        if self._failing:
            logger.info("channel layer is back")
            self._failing = False
        self.counts["published"] += 1
