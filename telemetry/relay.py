"""One subscription to the live stream per web process, fanned out to its sockets in-process.

Each live event crosses the channel layer once per process, into the relay's channel; the
relay hands each socket its share of the event by a plain method call. Delivering events to
every socket through the layer instead costs a message decode and a consumer dispatch per
socket per event: with 200 fleet dashboards that capped a web process near 14,000 readings/s
delivered (docs/performance.md). A flush's readings go to each socket as one list, not frame
by frame, and their seqs are checked here once for the process: per socket and frame, the
hand-off is a list append.

The channel layer loses what is sent while Redis is away, and says nothing about it. So the
relay probes its own path through the layer every second: a probe sent to the live group must
come back. When probes start coming back after failing, every socket is told to resync
(docs/reliability.md).
"""
import asyncio
import logging
import time
import uuid
import weakref
from collections import defaultdict

from hub.tasks import start_supervised
from telemetry.events import LIVE_GROUP, probe_event
from telemetry.metrics import RELAY_MESSAGES
from telemetry.recheck import AccessRecheck
from telemetry.snapshots import SnapshotReader

logger = logging.getLogger("telemetry.relay")

PROBE_SECONDS = 1.0
# A probe not back within this many seconds counts as lost: the live stream is broken.
PROBE_TIMEOUT = 2.0
# Group membership on channels-redis's core layer expires (a day by default), and a restarted
# Redis forgets it: renew it now and then, and after every failed probe.
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
        self.seqs = {}  # watched device id -> seq of the last readings frame relayed
        # The sockets' snapshots, read together: they must line up with the frames relayed.
        self.snapshots = SnapshotReader()
        # The process's sockets, their access checked again now and then.
        self.recheck = AccessRecheck()
        self.id = uuid.uuid4().hex
        self._probe_sent = 0
        self._probe_back = asyncio.Event()
        self._tasks = []

    async def watch(self, consumer, device_ids):
        """From now on, `consumer.live_frame()` gets the live frames of these devices."""
        for device_id in device_ids:
            self.watchers[device_id].add(consumer)
        if not self._tasks:
            # The layer's own kind of name: on the core layer, all of a process's channels
            # are received by one loop only if their names share its prefix.
            channel = await self.channel_layer.new_channel()
            await self.channel_layer.group_add(LIVE_GROUP, channel)
            self._tasks = [
                start_supervised("live_relay", lambda: self._relay_forever(channel)),
                start_supervised("live_probe", lambda: self._probe_forever(channel)),
            ]

    def unwatch(self, consumer, device_ids):
        for device_id in device_ids:
            consumers = self.watchers.get(device_id)
            if consumers is not None:
                consumers.discard(consumer)
                if not consumers:
                    del self.watchers[device_id]
                    self.seqs.pop(device_id, None)

    def dispatch(self, message):
        watchers = self.watchers
        RELAY_MESSAGES.labels(message["type"]).inc()
        if message["type"] == "live.probe":
            if message["relay"] == self.id and message["number"] == self._probe_sent:
                self._probe_back.set()
        elif message["type"] == "live.readings":
            self._hand_out(message["frames"])
        else:
            device_id = message["device"]
            # A copy: a socket whose followed command just ended stops watching in live_frame().
            for consumer in tuple(watchers.get(device_id, ())):
                consumer.live_frame(device_id, message["frame"])

    def _hand_out(self, frames):
        """Gives each socket, in one call, the readings frames of its devices. A frame no newer
        than one relayed before for its device (two bridges publish in their own order) is
        skipped, so every socket gets each device's frames in rising seq order."""
        watchers = self.watchers
        seqs = self.seqs
        shares = defaultdict(list)
        for frame in frames:
            device_id, seq, _ = frame
            consumers = watchers.get(device_id)
            if not consumers or seq <= seqs.get(device_id, 0):
                continue
            seqs[device_id] = seq
            for consumer in consumers:
                shares[consumer].append(frame)
        for consumer, share in shares.items():
            consumer.live_readings(share)

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

    async def _probe_forever(self, channel):
        """Probes the live stream every PROBE_SECONDS; rejoins the group when a probe is lost,
        and has every socket resync once probes come back."""
        broken_since = None
        joined = time.monotonic()
        while True:
            await asyncio.sleep(PROBE_SECONDS)
            try:
                if broken_since is not None or time.monotonic() - joined > REJOIN_SECONDS:
                    await asyncio.wait_for(self.channel_layer.group_add(LIVE_GROUP, channel), PROBE_TIMEOUT)
                    joined = time.monotonic()
                await self._probe()
            except Exception as exc:
                if broken_since is None:
                    broken_since = time.monotonic()
                    logger.error("live relay: the live stream is broken (%r); frames sent now are lost", exc)
                continue
            if broken_since is not None:
                consumers = {consumer for watching in self.watchers.values() for consumer in watching}
                logger.warning("live relay: the live stream is back after %.1f s; %d sockets resync",
                               time.monotonic() - broken_since, len(consumers))
                broken_since = None
                for consumer in consumers:
                    consumer.resync()

    async def _probe(self):
        """Sends a probe to the live group; TimeoutError unless it comes back in time."""
        self._probe_sent += 1
        self._probe_back.clear()
        async with asyncio.timeout(PROBE_TIMEOUT):
            await self.channel_layer.group_send(LIVE_GROUP, probe_event(self.id, self._probe_sent))
            await self._probe_back.wait()
