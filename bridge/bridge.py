"""The MQTT bridge: readings in, stored and published to dashboards; commands out, answers back.

Everything runs on one asyncio loop: paho's socket (bridge.mqtt), the flush loop, the command
sweeper, and the channels worker that receives commands (bridge.worker). Database work runs
in channels' database thread.
"""
import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter, defaultdict

import orjson
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from alarms.evaluate import AlarmEvaluator
from alarms.notify_worker import Notifier
from bridge import metrics, protocol
from bridge.broker_auth_sync import BrokerAuthSync
from bridge.clock import ReceiveClock
from bridge.db_errors import PERMANENT_DB_ERRORS, refused_by_database
from bridge.drain import PeerDrainer
from bridge.identity import own_address
from bridge.leases import OwnLease
from bridge.limits import DeviceBudgets
from bridge.live import LiveSender
from bridge.mqtt import MqttConnection, parse_mqtt_url
from bridge.protocol import Rejected
from bridge.rejects import RejectLog
from devices import commands
from devices.presence import record_status
from hub.tasks import cancel_and_wait, crashes, start_supervised
from telemetry import events
from telemetry.checkpoints import WalCheckpointer
from telemetry.storage import store_samples
from telemetry.upkeep import Upkeep

logger = logging.getLogger("bridge")

# After a database error, wait before retrying: doubling from the first delay to the last.
DB_RETRY_FIRST_SECONDS = 0.1
DB_RETRY_MAX_SECONDS = 5.0
SWEEP_SECONDS = 1.0
HEARTBEAT_SECONDS = 5.0
# Status and result messages being handled at once (each holds one small message); past this,
# as past HUB_BRIDGE_MAX_HELD_READINGS, the bridge stops reading from the broker.
MAX_BACKGROUND_TASKS = 1000

def db_retry_delay(failures):
    """The wait before the next try after `failures` database errors in a row: doubling, capped."""
    return min(DB_RETRY_MAX_SECONDS, DB_RETRY_FIRST_SECONDS * 2 ** (failures - 1))


def count_readings(samples):
    """Readings in parsed samples: one per value."""
    return sum(len(sample.values) for sample in samples)


class PendingReadings:
    """Telemetry messages received since the last flush, each to acknowledge once its readings
    are stored (or refused). Kept message by message, so that a batch the database refuses can
    be split down to the message at fault."""

    def __init__(self, messages=()):
        # (device id, samples, mid, qos, readings, the connection to acknowledge it on)
        self.messages = list(messages)
        self.readings = sum(message[4] for message in self.messages)
        self.since = None  # time.monotonic() when the oldest of them was received

    def add(self, device_id, samples, mid, qos, source):
        readings = count_readings(samples)
        self.messages.append((device_id, samples, mid, qos, readings, source))
        self.readings += readings
        if self.since is None:
            self.since = time.monotonic()

    def extend(self, newer):
        self.messages.extend(newer.messages)
        self.readings += newer.readings
        if self.since is None:
            self.since = newer.since

    def samples_by_device(self):
        samples = defaultdict(list)
        for device_id, device_samples, *_ in self.messages:
            samples[device_id].extend(device_samples)
        return samples

    def halves(self):
        middle = len(self.messages) // 2
        return PendingReadings(self.messages[:middle]), PendingReadings(self.messages[middle:])

    def forget_first(self, part):
        """Lets go of `part`, the first of these messages, once stored or refused."""
        del self.messages[:len(part)]
        self.readings -= part.readings

    def __len__(self):
        return len(self.messages)


class Bridge:
    def __init__(self, channel_layer, address, *, bridge_id, client_id, shared_group="", lease_seconds=10,
                 max_payload_bytes=65536, batch_window_ms=2, stats_interval=60, heartbeat_path=None,
                 broker_auth_dir=None, device_messages_per_second=100, device_bytes_per_second=262144,
                 max_held_readings=100000, stall_seconds=30, former_username=None):
        """`address`: the broker, with this bridge's own login (bridge.identity); `former_username`:
        the account all bridges shared before HUB_BRIDGE_ID, whose session is drained (bridge.drain)."""
        self.channel_layer = channel_layer
        self.address = address
        self.bridge_id = bridge_id
        self.client_id = client_id
        self.shared_group = shared_group
        self.lease = OwnLease(bridge_id, client_id, address.username, lease_seconds)
        # Only members of a shared group leave a share behind when they die.
        self.drainer = PeerDrainer(self, self.lease, former_username) if shared_group else None
        self.max_payload_bytes = max_payload_bytes
        self.batch_window = batch_window_ms / 1000
        self.stats_interval = stats_interval
        self.heartbeat_path = heartbeat_path
        self.max_held_readings = max_held_readings
        self.stall_seconds = stall_seconds
        self.broker_auth = None
        if broker_auth_dir:
            bridge_login = (address.username, address.password or "") if address.username else None
            self.broker_auth = BrokerAuthSync(broker_auth_dir, bridge_login)
        self.budgets = DeviceBudgets(device_messages_per_second, device_bytes_per_second)
        self._over_budget = Rejected(
            "rate_limited",
            f"over its budget of {device_messages_per_second} messages and {device_bytes_per_second} bytes a second",
        )
        self._backlog_full = Rejected(
            "backlog_full", f"QoS 0, and the bridge holds its maximum of {max_held_readings} readings unstored"
        )
        self.counts = Counter()
        self.rejects = RejectLog()
        self.receive_clock = ReceiveClock()
        self.mqtt = None
        self._pending = PendingReadings()
        self._storing = None  # the readings of the flush under way
        self._has_readings = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._tasks = []
        self._taking_lease = None
        self._lease_task = None
        self._drain_task = None
        self._live_task = None
        self._background = set()
        self.live = LiveSender(channel_layer, events.LIVE_GROUP, self.counts)
        self.upkeep = Upkeep()
        # SQLite's checkpoints, off the flushes' path (telemetry.checkpoints).
        self.checkpointer = WalCheckpointer() if connection.vendor == "sqlite" else None
        self.alarms = AlarmEvaluator(self.live.publish)
        self.notifier = Notifier.from_settings()
        self._store_failures = 0  # flushes failed in a row
        self._swept_at = time.monotonic()  # when the command sweep last completed a pass
        self._stall = None  # why the heartbeat is not touched, while it is not

    @classmethod
    def from_settings(cls, channel_layer, address=None, shared_group=None):
        """`shared_group` None: HUB_MQTT_SHARED_GROUP's."""
        address = address or parse_mqtt_url(settings.MQTT_URL)
        return cls(
            channel_layer,
            own_address(address, settings.BRIDGE_ID, manages_logins=bool(settings.BROKER_AUTH_DIR)),
            bridge_id=settings.BRIDGE_ID,
            client_id=settings.MQTT_CLIENT_ID,
            shared_group=settings.MQTT_SHARED_GROUP if shared_group is None else shared_group,
            lease_seconds=settings.BRIDGE_LEASE_SECONDS,
            max_payload_bytes=settings.MAX_PAYLOAD_BYTES,
            batch_window_ms=settings.BATCH_WINDOW_MS,
            stats_interval=settings.BRIDGE_STATS_INTERVAL,
            heartbeat_path=settings.BRIDGE_HEARTBEAT_FILE,
            broker_auth_dir=settings.BROKER_AUTH_DIR,
            device_messages_per_second=settings.DEVICE_MAX_MESSAGES_PER_SECOND,
            device_bytes_per_second=settings.DEVICE_MAX_BYTES_PER_SECOND,
            max_held_readings=settings.BRIDGE_MAX_HELD_READINGS,
            stall_seconds=settings.BRIDGE_STALL_SECONDS,
            former_username=address.username if settings.BROKER_AUTH_DIR else None,
        )

    def subscriptions(self):
        """Telemetry and command results, shared among bridges when a group is set.

        Status is neither shared nor queued: every bridge gets every status message, in the
        order the device sent them, and only the bridge whose update changes the device tells
        dashboards (devices.presence). At QoS 0 the broker keeps no status for a bridge that
        is away: on each connection it sends every device's retained status instead, which is
        the latest one. (Queued, they would be replayed on the bridge's return over newer
        ones another bridge had stored; and brokers send no retained messages to shared
        subscriptions.)"""
        telemetry, status, results = protocol.SUBSCRIPTIONS
        if self.shared_group:
            telemetry = f"$share/{self.shared_group}/{telemetry}"
            results = f"$share/{self.shared_group}/{results}"
        return [(telemetry, 1), (status, 0), (results, 1)]

    async def run(self):
        """Runs until `stop()`."""
        self.mqtt = MqttConnection(
            self.address,
            self.client_id,
            clean_session=False,
            manual_ack=True,
            subscriptions=self.subscriptions(),
            on_message=self._receive,
            on_connected=self._connected,
        )
        logger.info(
            "bridge %s starting: broker %s as %r (persistent session, QoS 1), channel layer %s, "
            "subscriptions %s, batch window %d ms",
            self.bridge_id, self.address, self.client_id, type(self.channel_layer).__name__,
            ", ".join(topic for topic, _ in self.subscriptions()), self.batch_window * 1000,
        )
        self._taking_lease = asyncio.create_task(self.lease.take())
        await asyncio.wait([self._taking_lease])
        if self._taking_lease.cancelled():
            return  # stopped while a survivor drained this bridge's session
        # Each restarted with backoff if it crashes (hub.tasks); the MQTT connection itself runs
        # here, and if it fails, so does the bridge, and runbridge exits non-zero.
        self._tasks = [
            start_supervised("flush_loop", self._flush_forever),
            start_supervised("command_sweep", self._sweep_commands_forever),
            start_supervised("stats_reporter", self._report_forever),
            start_supervised("alarm_notifier", self.notifier.run),
            start_supervised("rollups", self.upkeep.roll_up_forever),
            start_supervised("retention", self.upkeep.retain_forever),
            *self.alarms.start(),
        ]
        # Renewed until the bridge has left the broker: a peer that took a stopping bridge's lapsed
        # lease would connect as its session and cut it off before it acknowledged its last flush.
        self._lease_task = start_supervised("lease_renewal", self.lease.renew_forever)
        if self.drainer is not None:
            self._drain_task = start_supervised("peer_drain", self.drainer.run_forever)
        self._live_task = start_supervised("live_sender", self.live.run, finished=lambda: self.live.closing)
        if self.heartbeat_path:
            self._tasks.append(start_supervised("heartbeat", self._heartbeat_forever))
        if self.broker_auth:
            self._tasks.append(start_supervised("broker_auth_sync", self.broker_auth.run_forever))
        if self.checkpointer:
            self._tasks.append(start_supervised("wal_checkpoints", self.checkpointer.run_forever))
        await self.mqtt.run()

    async def stop(self):
        """Stores and acknowledges what it holds, then leaves the broker."""
        logger.info("bridge stopping: flushing %d pending readings", self._pending.readings)
        if self._taking_lease is not None:
            self._taking_lease.cancel()
        async with self._flush_lock:
            await cancel_and_wait(self._tasks)
            await self._flush()
        if self._drain_task is not None:
            # After the flush, which acknowledged what it stored of a session being drained.
            await cancel_and_wait([self._drain_task])
        await self.alarms.drain(timeout=2)
        if self._background:
            await asyncio.wait(self._background, timeout=5)
        if self._live_task is not None:
            await self.live.close(self._live_task, timeout=2)
        if self.mqtt is not None:
            await self.mqtt.disconnect()
        if self._lease_task is not None:
            await cancel_and_wait([self._lease_task])
        self._log_stats()
        logger.info("bridge stopped")

    # Messages from devices, on the loop thread.

    def _connected(self, session_present):
        logger.info("connected to %s (session present: %s)", self.address, session_present)

    def _receive(self, message):
        self.receive(message, self.mqtt)

    def receive(self, message, source):
        """Takes a message that came on `source`, this bridge's connection or a dead peer's session
        being drained (bridge.drain), and acknowledges it there once it is handled."""
        self.counts["received"] += 1
        try:
            device_id, kind = protocol.parse_topic(message.topic)
        except Rejected as rejection:
            self._drop("-", rejection, message, source)
            return
        if not self.budgets.allow(device_id, len(message.payload)):
            self._drop(device_id, self._over_budget, message, source)
            return
        if kind == protocol.TELEMETRY:
            if message.retain:
                self._drop(device_id, protocol.RETAINED_TELEMETRY, message, source)
                return
            now_ms = self.receive_clock.now(device_id)
            try:
                samples = protocol.parse_telemetry(message.payload, now_ms, self.max_payload_bytes)
            except Rejected as rejection:
                self._drop(device_id, rejection, message, source)
                return
            if len(samples) > 1:
                self.receive_clock.used(device_id, now_ms + len(samples) - 1)
            if message.qos == 0 and self.held_readings + count_readings(samples) > self.max_held_readings:
                # A QoS 1 message would wait at the broker while reading is paused; this one cannot.
                self._drop(device_id, self._backlog_full, message, source)
                return
            self._pending.add(device_id, samples, message.mid, message.qos, source)
            self._has_readings.set()
            self._hold_back_if_full()
        elif kind == protocol.STATUS:
            if source is not self.mqtt:
                # A dead peer's: the status subscription is not shared, so every live bridge
                # received this message itself.
                source.ack(message.mid, message.qos)
                return
            self._in_background(self._handle_status(device_id, message))
        else:
            self._in_background(self._handle_result(device_id, message, source))

    def _drop(self, device_id, rejection, message, source=None):
        """Rejects a message and acknowledges it on `source` (None: this bridge's connection)."""
        self.rejects.reject(device_id, rejection.reason, rejection.detail)
        (source or self.mqtt).ack(message.mid, message.qos)

    def _in_background(self, coroutine):
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background_done)
        self._hold_back_if_full()

    def _background_done(self, task):
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Its message stays unacknowledged: the broker sends it again on the next connection.
            logger.error("handling a status or result message crashed", exc_info=task.exception(),
                         extra={"task": "message_handler"})
            crashes["message_handler"] += 1
        self._resume_if_room()

    # Bounded memory: while the database is away the backlog waits at the broker, not here.

    @property
    def held_readings(self):
        """Readings received and not yet stored: those waiting for the next flush and those of
        the flush under way (which, if it fails, become waiting ones again)."""
        held = self._pending.readings
        if self._storing is not None and self._storing is not self._pending:
            held += self._storing.readings
        return held

    def oldest_held_age(self):
        """Seconds the oldest reading not yet stored has waited; 0 when none waits."""
        since = [batch.since for batch in (self._pending, self._storing) if batch is not None and batch.since is not None]
        return time.monotonic() - min(since) if since else 0.0

    def _hold_back_if_full(self):
        """Stops reading from the broker once the bridge holds its maximum of readings, or of
        status and result messages: unacknowledged QoS 1 messages then wait in the broker's
        queue for this session. Reading resumes at half of each."""
        if self.mqtt.reading_paused:
            return
        if self.held_readings >= self.max_held_readings or len(self._background) >= MAX_BACKGROUND_TASKS:
            self.mqtt.pause_reading()
            self.counts["paused"] += 1
            logger.debug("reading paused: holding %d readings and %d status or result messages",
                         self.held_readings, len(self._background))

    def _hold_again(self, batch):
        """Puts the readings of a flush that crashed back in front of those received since."""
        if batch is not self._pending:
            batch.extend(self._pending)
            self._pending = batch
        self._has_readings.set()

    def _resume_if_room(self):
        if (self.mqtt.reading_paused and self.held_readings <= self.max_held_readings // 2
                and len(self._background) <= MAX_BACKGROUND_TASKS // 2):
            self.mqtt.resume_reading()
            logger.debug("reading resumed: holding %d readings", self.held_readings)

    # Readings.

    async def _flush_forever(self):
        """Stores at once when idle; when busy, at most one flush per batch window."""
        while True:
            await self._has_readings.wait()
            started = time.monotonic()
            async with self._flush_lock:
                # _flush takes every pending reading at its start: held_readings counts them
                # until it returns.
                self._storing = self._pending
                try:
                    await self._flush()
                except Exception:
                    # Unacknowledged, they would wait at the broker until the next connection
                    # while the bridge looked idle: held, they are retried, and a flush that
                    # keeps crashing stops the heartbeat.
                    self._hold_again(self._storing)
                    raise
                finally:
                    self._storing = None
            self._resume_if_room()
            await asyncio.sleep(max(0.0, self.batch_window - (time.monotonic() - started)))

    async def _flush(self):
        """Stores what is pending in one transaction. If the database refuses it for good (a
        data or integrity error), stores its halves apart, down to single messages: every
        message it takes is stored, each one it refuses is rejected, and both are acknowledged.
        Any other error holds what is not stored yet, unacknowledged, for the next flush."""
        self._has_readings.clear()
        if not self._pending:
            return
        batch, self._pending = self._pending, PendingReadings()
        received_at = timezone.now()
        # Parts are stored first half first, so those done are always the first messages of
        # the batch: the batch keeps exactly those not stored or refused yet.
        parts = [PendingReadings(batch.messages)]
        splitting = False
        while parts:
            part = parts.pop()
            samples = part.samples_by_device()
            started = time.monotonic()
            try:
                seqs = await database_sync_to_async(store_samples)(samples, received_at)
            except PERMANENT_DB_ERRORS as exc:
                metrics.count_store_failure(exc)
                if len(part) > 1:
                    if not splitting:
                        splitting = True
                        logger.warning("the database refused a flush of %d readings from %d messages; storing "
                                       "them apart to find the messages at fault: %s", part.readings, len(part), exc)
                    parts.extend(reversed(part.halves()))
                    continue
                self._refused(part, exc)
            except DatabaseError as exc:
                await self._hold_unstored(batch, exc)
                return
            else:
                metrics.FLUSH_SECONDS.observe(time.monotonic() - started)
                self._stored(part, samples, seqs)
            batch.forget_first(part)

    def _refused(self, part, error):
        """Rejects and acknowledges the one message of `part`, which the database refused."""
        ((device_id, _, mid, qos, _, source),) = part.messages
        self.rejects.reject(device_id, "store_refused", refused_by_database(error))
        source.ack(mid, qos)

    async def _hold_unstored(self, batch, error):
        """Holds what is left of a batch, unacknowledged, before newer readings, and backs off."""
        self._store_failures += 1
        delay = db_retry_delay(self._store_failures)
        kind = metrics.count_store_failure(error)
        logger.error("could not store %d readings, holding them unacknowledged; retrying in %.1f s: %s",
                     batch.readings, delay, error, extra={"count": batch.readings, "kind": kind})
        batch.extend(self._pending)
        self._pending = batch
        self._has_readings.set()
        await asyncio.sleep(delay)

    def _stored(self, part, samples, seqs):
        """Acknowledges a stored part, counts its readings and sends their frames to dashboards."""
        if self._store_failures:
            logger.info("stored %d readings after %d failed attempts", part.readings, self._store_failures)
            self._store_failures = 0
        unknown = Counter()
        acks = defaultdict(list)  # by the connection each message came on
        for device_id, _, mid, qos, _, source in part.messages:
            acks[source].append((mid, qos))
            if device_id not in seqs:
                unknown[device_id] += 1
        for source, taken in acks.items():
            source.ack_all(taken)
        for device_id, count in unknown.items():
            self.rejects.reject(device_id, "unknown_device", "no device with this id is registered", count)
        self.counts["stored"] += sum(count_readings(samples[device_id]) for device_id in seqs)
        if seqs:
            # One message for the whole part, however many devices it holds.
            frames = [events.readings_frame(device_id, seq, samples[device_id]) for device_id, seq in seqs.items()]
            self.live.publish(events.readings_event(frames))
            self.alarms.readings_stored(samples, seqs)

    # Status and commands.

    async def _handle_status(self, device_id, message):
        try:
            online = protocol.parse_status(message.payload)
        except Rejected as rejection:
            self._drop(device_id, rejection, message)
            return
        now = timezone.now()
        try:
            known, changed = await self._with_db_retry(record_status, device_id, online, now, message.retain)
        except PERMANENT_DB_ERRORS as exc:
            self._drop(device_id, Rejected("store_refused", refused_by_database(exc)), message)
            return
        self.mqtt.ack(message.mid, message.qos)
        if not known:
            self.rejects.reject(device_id, "unknown_device", "no device with this id is registered")
            return
        if changed:
            self.live.publish(events.status_event(device_id, online, events.to_ms(now)))
        if online:
            for command_id in await self._with_db_retry(commands.sendable_ids, now, device_id):
                await self.dispatch_command(command_id)

    async def _handle_result(self, device_id, message, source):
        """Records a device's answer. An answer the hub refuses to keep (or the database
        refuses to store) still ends its command: failed, saying why."""
        refusal = None
        try:
            answer = protocol.parse_command_result(message.payload, self.max_payload_bytes)
        except protocol.RefusedResult as refused:
            refusal, answer = refused, refused.failure
        except Rejected as rejection:
            self._drop(device_id, rejection, message, source)
            return
        try:
            command = await self._with_db_retry(commands.record_result, device_id, answer)
        except PERMANENT_DB_ERRORS as exc:
            refusal = protocol.RefusedResult(answer.command_id, "store_refused", refused_by_database(exc))
            command = await self._with_db_retry(commands.record_result, device_id, refusal.failure)
        source.ack(message.mid, message.qos)
        if command is None:
            self.rejects.reject(device_id, "unknown_command", f"no command {answer.command_id} awaits an answer")
            return
        if refusal is not None:
            self.rejects.reject(device_id, refusal.reason, refusal.detail)
        self.live.publish(events.command_event(command))

    async def dispatch_command(self, command_id):
        """Sends a pending command if its device is online; otherwise it waits for the device.
        Every bridge is asked for every command (the channel layer hands a message on the
        bridge's channel to each bridge, and each bridge's sweep finds every pending command):
        the claim lets exactly one of them send it, once."""
        try:
            command_id = uuid.UUID(str(command_id))
        except ValueError:
            logger.warning("ignored a dispatch request for %r: not a command id", command_id)
            return
        if not self.mqtt.connected.is_set():
            return  # the sweep sends it once this bridge (or another) is connected
        command = await self._with_db_retry(commands.claim_for_sending, command_id, timezone.now())
        if command is None:
            return
        try:
            payload = protocol.command_payload(command.id, command.name, command.params)
        except orjson.JSONEncodeError as exc:
            # Stored before params were checked on creation (devices.commands.check_params):
            # it can never be sent, and must not stop the sweep for every other command.
            logger.error("command %s %r to %s cannot be encoded, marked failed: %s",
                         command.id, command.name, command.device_id, exc)
            failed = await self._with_db_retry(
                commands.fail_unsendable, command.id, f"the hub cannot encode its params: {exc}", timezone.now()
            )
            if failed is not None:
                self.live.publish(events.command_event(failed))
            return
        # QoS 2: if the connection drops before the broker confirms, paho sends the command
        # again on reconnection, and the broker (which keeps this bridge's session) takes it once.
        if self.mqtt.publish(protocol.commands_topic(command.device_id), payload, qos=2):
            logger.info("sent command %s %r to %s", command.id, command.name, command.device_id)
        else:
            # Lost the connection while claiming: paho keeps the message and sends it once
            # connected again. Putting the command back to pending would send it twice.
            logger.warning("command %s %r to %s waits in the MQTT client for the broker to be back",
                           command.id, command.name, command.device_id)
        self.live.publish(events.command_event(command))

    async def _sweep_commands_forever(self):
        """Expires commands whose ttl or timeout ran out and sends any that wait for an online device
        (their dispatch request may have been lost: the channel layer is at-most-once)."""
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            now = timezone.now()
            for command in await self._with_db_retry(commands.expire_due, now):
                logger.info("command %s %r to %s expired", command.id, command.name, command.device_id)
                self.live.publish(events.command_event(command))
            if self.mqtt.connected.is_set():
                for command_id in await self._with_db_retry(commands.sendable_ids, now):
                    await self.dispatch_command(command_id)
            self._swept_at = time.monotonic()

    async def _with_db_retry(self, function, *args):
        """Calls `function` in the database thread, retrying transient errors with backoff
        until it succeeds. A permanent error (PERMANENT_DB_ERRORS) is raised at once: trying
        again would meet it again."""
        failures = 0
        while True:
            try:
                return await database_sync_to_async(function)(*args)
            except PERMANENT_DB_ERRORS as exc:
                kind = metrics.count_store_failure(exc)
                logger.error("the database refused %s, not retrying: %s", function.__name__, exc, extra={"kind": kind})
                raise
            except DatabaseError as exc:
                failures += 1
                delay = db_retry_delay(failures)
                kind = metrics.count_store_failure(exc)
                logger.error("database error in %s, retrying in %.1f s: %s", function.__name__, delay, exc,
                             extra={"kind": kind})
                await asyncio.sleep(delay)

    # Reporting.

    async def _report_forever(self):
        while True:
            await asyncio.sleep(self.stats_interval)
            self.budgets.forget_idle()
            self._log_stats()

    def stalled(self):
        """Why the bridge is not making progress, or None when it is connected to the broker,
        no reading has waited more than `stall_seconds` to be stored, and the command sweep,
        the alarm evaluation's timers and the notifier completed a pass within `stall_seconds`
        (and no flush has waited as long to be evaluated)."""
        if not self.mqtt.connected.is_set():
            return "not connected to the broker"
        waited = self.oldest_held_age()
        if waited > self.stall_seconds:
            return f"a reading has waited {waited:.0f} s to be stored"
        since_sweep = time.monotonic() - self._swept_at
        if since_sweep > self.stall_seconds + SWEEP_SECONDS:
            return f"the command sweep has not completed a pass for {since_sweep:.0f} s"
        return self.alarms.stalled(self.stall_seconds) or self.notifier.stalled(self.stall_seconds)

    async def _heartbeat_forever(self):
        """Touches the heartbeat file every HEARTBEAT_SECONDS while the bridge makes progress
        (see stalled()): health checks read its age."""
        self.heartbeat_path.parent.mkdir(parents=True, exist_ok=True)
        await self.mqtt.connected.wait()  # the first connection: nothing to report before it
        while True:
            stall = self.stalled()
            if stall is None:
                self.heartbeat_path.touch()
                if self._stall is not None:
                    logger.info("heartbeat resumed: connected, storing and sweeping commands again")
            elif self._stall is None:
                logger.warning("heartbeat stopped: %s", stall)
            self._stall = stall
            if self.mqtt.connected.is_set():
                await asyncio.sleep(HEARTBEAT_SECONDS)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.mqtt.connected.wait(), HEARTBEAT_SECONDS)

    def _log_stats(self):
        rejected = ", ".join(f"{reason}={count}" for reason, count in sorted(self.rejects.counts.items()))
        logger.info(
            "stats: received=%d stored_readings=%d published=%d live_failed=%d rejected={%s} "
            "held=%d oldest_held_s=%.1f background=%d reading=%s pauses=%d",
            self.counts["received"], self.counts["stored"], self.counts["published"],
            self.counts["live_failed"], rejected, self.held_readings, self.oldest_held_age(),
            len(self._background), "paused" if self.mqtt is not None and self.mqtt.reading_paused else "on",
            self.counts["paused"],
        )
