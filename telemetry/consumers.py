"""Websockets for dashboards: live readings, status and commands (docs/protocol.md)."""
import asyncio
import logging
import time

import orjson
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings

from devices import access
from devices.commands import create_command
from hub import tasks
from telemetry import events
from telemetry.announce import announce_command
from telemetry.backpressure import close_with_policy_violation
from telemetry.frames import ALL_DEVICES, FrameError, SendCommand, Subscribe, Unsubscribe, parse_client_frame
from telemetry.inbound import DROPPED, EXCEEDED, REFUSED, InboundBudget, utf8_size
from telemetry.metrics import SOCKETS_ENDED
from telemetry.outbox import MAX_MESSAGE_CHARS, Outbox
from telemetry.pacing import SendPace
from telemetry.recheck import Grant
from telemetry.relay import relay_for

UNAUTHENTICATED = 4401
FINISHED_STATUSES = {"succeeded", "failed", "expired"}
SNAPSHOTS_PER_MESSAGE = 500
FORBIDDEN = 4403
POLICY_VIOLATION = 1008
SERVER_ERROR = 4500
BATCH_OVERHEAD = len('{"type":"batch","frames":[]}')
# How long after its snapshot a socket skips a device's frames that the snapshot holds already.
# Such a frame was stored before the snapshot was read and reaches the relay within moments.
SNAPSHOT_OVERLAP_SECONDS = 10.0

logger = logging.getLogger("telemetry.consumers")


class DashboardConsumer(AsyncWebsocketConsumer):
    """What both dashboard sockets share: sign-in, watching devices, the outbox, commands.

    Live frames pass through a bounded outbox and go out as websocket messages at most
    `send_rate` times a second on average, up to `send_burst` back to back: at once when
    the socket is not busy, coalesced into batches when it is.
    """

    send_rate = 20
    send_burst = 3
    # No channel of its own: live frames come through the process's relay. (A channel per
    # socket is a Redis BRPOP per socket on the core layer, and a Redis outage ends its socket.)
    channel_layer_alias = None
    # Set once the socket belongs to a signed-in user; a socket closed before stays without them.
    watched = None
    followed = None
    sender = None
    resyncing = None
    session_key = None  # None: a socket whose scope has no session (a test's), checked by its user
    ended = False  # closed from the server's side: what it is still sent is ignored

    async def connect(self):
        self.channel_layer = get_channel_layer()
        await self.accept()
        self.user = self.scope.get("user")
        if self.user is None or not self.user.is_authenticated:
            await self.close(code=UNAUTHENTICATED)
            return
        session = self.scope.get("session")
        self.session_key = session.session_key if session is not None else None
        self.budget = InboundBudget(
            settings.WS_MAX_FRAMES_PER_SECOND, settings.WS_MAX_BYTES_PER_SECOND, settings.WS_BURST_SECONDS
        )
        self.watched = set()
        self.awaiting_snapshot = {}  # device id -> live frames that came while its snapshot was read
        self.snapshot_seqs = {}  # device id -> seq of its snapshot, for SNAPSHOT_OVERLAP_SECONDS
        self.snapshot_overlap_ends = 0.0
        self.followed = {}  # device id -> ids of this socket's commands to a device it does not watch
        self.outbox = Outbox(settings.WS_MAX_PENDING_FRAMES)
        self.sender = asyncio.create_task(self._send_forever())
        self.sender.add_done_callback(self._sender_ended)
        relay_for(self.channel_layer).recheck.add(self)
        await self.opened()

    async def opened(self):
        """Called once the socket belongs to a signed-in user."""

    async def disconnect(self, code):
        self._stop()

    def _stop(self):
        """Stops everything the socket does: sending, watching, following, being re-checked.
        Run again on disconnect, after any handler that was under way when the socket ended."""
        self.ended = True
        for task in (self.sender, self.resyncing):
            if task is not None:
                task.cancel()
        if self.watched is None:
            return
        relay = relay_for(self.channel_layer)
        relay.unwatch(self, list(self.watched | self.followed.keys()))
        relay.recheck.discard(self)
        for held in (self.watched, self.followed, self.awaiting_snapshot, self.snapshot_seqs):
            held.clear()

    def _sender_ended(self, task):
        """A sender that crashed would leave the socket open with nothing coming: the crash is
        logged and counted, and the socket closed, so its page reconnects and starts afresh."""
        if task.cancelled() or self.ended:
            return
        logger.error("a socket's sender crashed; closing it with %d", SERVER_ERROR, exc_info=task.exception(),
                     extra={"task": "socket_sender"})
        tasks.crashes["socket_sender"] += 1
        asyncio.ensure_future(self.end(SERVER_ERROR))

    async def end(self, code, reason="policy violation"):
        """Closes the socket from the server's side; nothing more is sent or handled."""
        SOCKETS_ENDED.labels(str(code)).inc()
        self._stop()
        connection = self.scope.get("daphne_connection")  # telemetry.backpressure
        if code == POLICY_VIOLATION and connection is not None:
            close_with_policy_violation(connection, reason)
        else:
            await self.close(code=code)

    # Access re-checked while the socket is open (telemetry.recheck).

    def grant(self):
        return Grant(self.session_key, self.user.pk, frozenset(self.watched | self.followed.keys()))

    async def signed_out(self):
        """The socket's session or user no longer holds."""
        await self.end(UNAUTHENTICATED)

    async def forbid(self, device_ids):
        """Takes devices its user may no longer watch from the socket, and says so."""
        watched = [device_id for device_id in device_ids if device_id in self.watched]
        followed = [device_id for device_id in device_ids if self.followed.pop(device_id, None) is not None]
        if not watched and not followed:
            return
        await self.unwatch(watched)
        relay_for(self.channel_layer).unwatch(self, followed)
        gone = sorted(watched + followed)
        await self.send(text_data=events.error_frame("forbidden", "you may no longer watch these devices", devices=gone))

    async def receive(self, text_data=None, bytes_data=None):
        if self.watched is None or self.ended:
            return
        # Counted before anything else is done with the frame: see telemetry.inbound.
        verdict = self.budget.spend(utf8_size(text_data) if text_data is not None else len(bytes_data))
        if verdict == REFUSED:
            detail = (f"at most {settings.WS_MAX_FRAMES_PER_SECOND} frames and {settings.WS_MAX_BYTES_PER_SECOND} "
                      "bytes a second: frames are dropped until then, and the socket closed if more keep coming")
            await self.send(text_data=events.error_frame("rate_limited", detail))
            return
        if verdict == DROPPED:
            return
        if verdict == EXCEEDED:
            await self.end(POLICY_VIOLATION, "frames over the rate limit")
            return
        try:
            action = parse_client_frame(text_data if text_data is not None else bytes_data, self.command_device)
            await self.perform(action)
        except FrameError as error:
            await self.send(text_data=events.error_frame(error.code, error.detail, **error.extra))

    command_device = None

    async def perform(self, action):
        if isinstance(action, SendCommand):
            await self.give_command(action)
        else:
            raise FrameError("unknown_action", "this socket takes command frames only")

    # Watching devices.

    async def watch(self, device_ids):
        """Has the process's live relay hand this socket the devices' frames, then sends their
        snapshots, then the frames that came meanwhile and are newer than the snapshot."""
        if self.ended:
            return
        new = [device_id for device_id in device_ids if device_id not in self.watched]
        for device_id in new:
            self.watched.add(device_id)
            self.awaiting_snapshot[device_id] = []
            self.followed.pop(device_id, None)  # watching it brings its commands' frames anyway
        await relay_for(self.channel_layer).watch(self, new)
        await self._send_snapshots(new)

    def resync(self):
        """Called by the relay when the live stream comes back after a break: frames of the
        watched devices may have been lost, so the client gets a `resync` frame and fresh
        snapshots, and refetches what it missed."""
        device_ids = [device_id for device_id in self.watched if device_id not in self.awaiting_snapshot]
        if not device_ids:
            return
        for device_id in device_ids:
            self.awaiting_snapshot[device_id] = []
        self.resyncing = asyncio.ensure_future(self._send_snapshots(device_ids, events.resync_frame(device_ids)))

    async def _send_snapshots(self, device_ids, preface=None):
        """Sends the snapshots of devices whose live frames wait in `awaiting_snapshot`, then
        those of the frames that are newer than the snapshot."""
        snapshots = await relay_for(self.channel_layer).snapshots.read(device_ids)
        texts = [text for _, _, text in snapshots]
        if preface is not None:
            texts.insert(0, preface)
        for start in range(0, len(texts), SNAPSHOTS_PER_MESSAGE):
            await self.send_frames(texts[start:start + SNAPSHOTS_PER_MESSAGE])
        for device_id, seq, _ in snapshots:
            if device_id in self.watched:
                self.snapshot_seqs[device_id] = seq
        self.snapshot_overlap_ends = time.monotonic() + SNAPSHOT_OVERLAP_SECONDS
        for device_id in device_ids:
            for text, seq in self.awaiting_snapshot.pop(device_id, ()):
                self.live_frame(device_id, text, seq)

    async def unwatch(self, device_ids):
        gone = [device_id for device_id in device_ids if device_id in self.watched]
        for device_id in gone:
            self.watched.discard(device_id)
            self.awaiting_snapshot.pop(device_id, None)
            self.snapshot_seqs.pop(device_id, None)
        # A device whose command this socket follows stays with the relay until the command ends.
        relay_for(self.channel_layer).unwatch(self, [device_id for device_id in gone if device_id not in self.followed])

    def live_readings(self, frames):
        """Readings frames from the relay, (device id, seq, text) in rising seq order per device,
        for devices this socket watches or follows. Unless a snapshot is being read or was
        read moments ago, or the socket follows a command, they are queued as they are."""
        if self.snapshot_seqs and time.monotonic() > self.snapshot_overlap_ends:
            self.snapshot_seqs.clear()
        if self.awaiting_snapshot or self.snapshot_seqs or self.followed:
            for device_id, seq, text in frames:
                self.live_frame(device_id, text, seq)
        else:
            self.outbox.extend(frames)

    def live_frame(self, device_id, text, seq=None):
        """One live frame from the relay. A readings frame (with its seq) that the device's
        snapshot holds already is skipped. For a device the socket does not watch, only the
        frames of the commands it gave come through."""
        if device_id not in self.watched:
            self._command_progress(device_id, text)
            return
        waiting = self.awaiting_snapshot.get(device_id)
        if waiting is not None:
            waiting.append((text, seq))
            return
        if seq is not None and device_id in self.snapshot_seqs:
            if seq <= self.snapshot_seqs[device_id]:
                return
            del self.snapshot_seqs[device_id]  # the relay's frames only rise from here
        self.outbox.put(device_id, text)

    def _command_progress(self, device_id, text):
        ids = self.followed.get(device_id)
        if not ids:
            return
        frame = orjson.loads(text)
        if frame["type"] != "command" or frame["id"] not in ids or frame["status"] == "pending":
            return  # give_command() showed the pending frame itself
        self.outbox.put(device_id, text)
        if frame["status"] in FINISHED_STATUSES:
            ids.discard(frame["id"])
            if not ids:
                del self.followed[device_id]
                relay_for(self.channel_layer).unwatch(self, [device_id])

    async def _send_forever(self):
        """Sends what waits as one websocket message, at the socket's pace: a lone frame as it
        is, several as a batch frame. Under daphne, waits while the client does not take what
        was sent (telemetry.backpressure)."""
        gate = self.scope.get("write_gate")  # telemetry.backpressure
        pace = SendPace(self.send_rate, self.send_burst)
        while True:
            await self.outbox.ready.wait()
            if gate is not None:
                await gate.open.wait()  # until the client takes what was sent already
            delay = pace.delay()
            if delay:
                await asyncio.sleep(delay)
            texts, dropped = self.outbox.take()
            if dropped:
                texts.insert(0, orjson.dumps({"type": "dropped", "devices": dropped}).decode())
            await self.send_frames(texts)

    async def send_frames(self, texts):
        """Sends encoded frames in as few websocket messages as daphne takes: alone as they
        are, several as a batch, each message at most MAX_MESSAGE_CHARS."""
        start = 0
        while start < len(texts):
            end, size = start + 1, len(texts[start])
            while end < len(texts) and size + len(texts[end]) + 1 < MAX_MESSAGE_CHARS - BATCH_OVERHEAD:
                size += len(texts[end]) + 1
                end += 1
            if end - start == 1:
                await self.send(text_data=texts[start])
            else:
                await self.send(text_data='{"type":"batch","frames":[' + ",".join(texts[start:end]) + "]}")
            start = end

    # Commands.

    async def give_command(self, action):
        allowed = await database_sync_to_async(access.can_command)(self.user, action.device)
        if not allowed:
            raise FrameError("forbidden", f"you may not command {action.device}", device=action.device)
        command = await database_sync_to_async(create_command)(
            action.device, self.user, action.name, action.params, action.ttl, action.timeout
        )
        if action.device not in self.watched:
            # Follow this command's progress without watching the device.
            self.followed.setdefault(action.device, set()).add(str(command.id))
            await relay_for(self.channel_layer).watch(self, [action.device])
            await self.send(text_data=events.command_event(command)["frame"])
        await announce_command(self.channel_layer, command)


class DeviceConsumer(DashboardConsumer):
    """ws/devices/<id>/: one device, its snapshot on connect, then its live frames."""

    async def opened(self):
        self.command_device = self.scope["url_route"]["kwargs"]["device_id"]
        visible = await database_sync_to_async(access.watchable_ids)(self.user, [self.command_device])
        if not visible:
            detail = f"you may not watch {self.command_device}"
            await self.send(text_data=events.error_frame("forbidden", detail, device=self.command_device))
            await self.close(code=FORBIDDEN)
            return
        await self.watch([self.command_device])

    async def forbid(self, device_ids):
        """The socket's one device: it is told, as when it opens, and closed."""
        if self.command_device not in device_ids:
            return
        detail = f"you may no longer watch {self.command_device}"
        await self.send(text_data=events.error_frame("forbidden", detail, device=self.command_device))
        await self.end(FORBIDDEN)


class FleetConsumer(DashboardConsumer):
    """ws/fleet/: one socket, the devices the client subscribes to.

    It sends at most 10 times a second: a table of many devices reads no better at 20, and each
    send costs the web process and the browser the same whatever it holds.
    """

    send_rate = 10

    async def perform(self, action):
        if isinstance(action, Subscribe):
            await self.subscribe(action.devices)
        elif isinstance(action, Unsubscribe):
            await self.unwatch(list(self.watched) if action.devices == ALL_DEVICES else action.devices)
        else:
            await self.give_command(action)

    async def subscribe(self, device_ids):
        if device_ids == ALL_DEVICES:
            visible = await database_sync_to_async(self._all_visible)()
            await self.watch(sorted(visible))
            return
        visible = await database_sync_to_async(access.watchable_ids)(self.user, device_ids)
        await self.watch(sorted(visible))
        denied = sorted(device_ids - visible)
        if denied:
            raise FrameError("forbidden", "you may not watch these devices", devices=denied)

    def _all_visible(self):
        return set(access.visible_devices(self.user).values_list("pk", flat=True))
