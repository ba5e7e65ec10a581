"""Draining a dead peer's broker session, so that no share of the readings is held hostage.

Mosquitto 2.0 keeps routing a dead member's share of a `$share` subscription to its persistent
session until that client comes back. So a bridge that has held its own lease for a whole lease
period looks for a peer's lapsed lease every few seconds; the one survivor that takes it over
(bridge.leases):

1. logs in as the peer (its client id and account; bridge.identity) without cleaning its
   session, and unsubscribes it: the broker stops routing to it, and what it queued flows in;
2. handles each message through its own bridge (Bridge.receive): stored, then acknowledged;
3. once everything is acknowledged and nothing has come for QUIET_SECONDS, connects once more
   with a clean session, which ends the session at the broker, and removes the peer's lease
   and, when the hub keeps the logins, its account.

A peer that comes back waits for the drain to finish before it connects (OwnLease.take). One
that was alive after all (its lease lapsed while, say, its database stalled) takes its session
back by connecting: the broker then closes the survivor's connection, and the survivor hands
the lease back. Readings with a device-set ts are never stored twice (telemetry.storage).
"""
import asyncio
import logging
import time

from channels.db import database_sync_to_async
from django.db import DatabaseError, transaction

from bridge import leases, protocol
from bridge.mqtt import MqttConnection
from devices.models import BrokerAccount

logger = logging.getLogger("bridge")

CHECK_SECONDS = 2.0
CONNECT_SECONDS = 10.0
# Everything received acknowledged and nothing more for this long: the session is empty.
QUIET_SECONDS = 2.0


class PeerSession(MqttConnection):
    """A dead peer's session, taken over once: unsubscribed on connect, counting what it
    received and what was acknowledged on it."""

    def __init__(self, address, client_id, topics, handle):
        super().__init__(address, client_id, clean_session=False, manual_ack=True, reconnect=False,
                         on_message=self._take, on_connected=self._unsubscribe)
        self.topics = topics
        self.handle = handle
        self.received = self.acked = 0
        self.session_present = False
        self.unsubscribed = asyncio.Event()
        self._last_event = time.monotonic()
        self.client.on_unsubscribe = self._handle_unsubscribe

    def _unsubscribe(self, session_present):
        self.session_present = session_present
        self.client.unsubscribe(self.topics)

    def _handle_unsubscribe(self, client, userdata, mid, reason_codes, properties):
        self._last_event = time.monotonic()
        self.unsubscribed.set()

    def _take(self, message):
        self.received += 1
        self._last_event = time.monotonic()
        self.handle(message, self)

    def ack(self, mid, qos):
        self.acked += 1
        super().ack(mid, qos)

    def ack_all(self, acks):
        self.acked += len(acks)
        super().ack_all(acks)

    def emptied(self):
        """True once unsubscribed, with every message acknowledged and none for QUIET_SECONDS."""
        return (self.unsubscribed.is_set() and self.acked >= self.received
                and time.monotonic() - self._last_event >= QUIET_SECONDS)


async def connect_once(connection):
    """Starts `connection` (made with reconnect=False) and waits until it is connected, has
    failed, or CONNECT_SECONDS have passed; returns the task running it."""
    running = asyncio.create_task(connection.run())
    connected = asyncio.create_task(connection.connected.wait())
    await asyncio.wait([connected, running], timeout=CONNECT_SECONDS, return_when=asyncio.FIRST_COMPLETED)
    connected.cancel()
    return running


def forget_peer(peer_id, holder, username):
    """Removes a drained bridge's lease and, if `username`, its broker account; a bridge that
    comes back registers both again."""
    with transaction.atomic():
        if leases.release(peer_id, holder) and username:
            BrokerAccount.objects.filter(username=username, role=BrokerAccount.Role.BRIDGE).delete()


class PeerDrainer:
    """Drains the sessions of the peers whose leases lapsed, one at a time."""

    def __init__(self, bridge, lease, former_username=None):
        """`former_username`: the one account every bridge used before HUB_BRIDGE_ID, if the hub
        keeps the logins (leases.adopt_former_account)."""
        self.bridge = bridge
        self.lease = lease
        self.former_username = former_username

    async def run_forever(self):
        if self.former_username:
            await database_sync_to_async(leases.adopt_former_account)(self.former_username)
        while True:
            await asyncio.sleep(CHECK_SECONDS)
            # Only a bridge that is itself alive by its lease judges others: after an outage of
            # the database every lease has lapsed, and each bridge renews its own first.
            if self.lease.held_for() < self.lease.seconds or not self.bridge.mqtt.connected.is_set():
                continue
            try:
                peer = await database_sync_to_async(leases.take_lapsed)(self.bridge.bridge_id, self.lease.seconds)
                if peer is not None:
                    await self.drain(peer)
            except DatabaseError as error:
                logger.error("peer sessions: database error, trying again in %.0f s: %s", CHECK_SECONDS, error)

    def _peer_topics(self):
        """What a peer may have subscribed to: this bridge's topics, and each plain and shared (a
        peer started with another HUB_MQTT_SHARED_GROUP, or none). Unsubscribing from a topic
        a session does not have does nothing."""
        shared = [topic for topic, _ in self.bridge.subscriptions()]
        return sorted({*shared, *protocol.SUBSCRIPTIONS})

    def _address(self, peer):
        address = self.bridge.address
        return address.with_login(peer.username, address.password) if peer.username else address.without_login()

    async def drain(self, peer):
        """Drains `peer`'s session and ends it, or hands its lease back if it cannot."""
        started = time.monotonic()
        logger.warning("bridge %s has not renewed its lease: draining its broker session as %r",
                       peer.bridge_id, peer.client_id, extra={"peer": peer.bridge_id})
        session = PeerSession(self._address(peer), peer.client_id, self._peer_topics(), self.bridge.receive)
        running = None
        try:
            running = await connect_once(session)
            stopped_because = await self._take_everything(peer, session, running)
        finally:
            await session.disconnect()
            if running is not None:
                await asyncio.gather(running, return_exceptions=True)
            self.bridge.counts["peer_messages_drained"] += session.received
        if stopped_because is not None:
            logger.warning("stopped draining bridge %s after %d messages: %s; handing its lease back",
                           peer.bridge_id, session.received, stopped_because, extra={"peer": peer.bridge_id})
            await database_sync_to_async(leases.hand_back)(peer.bridge_id, self.bridge.bridge_id, self.lease.seconds)
            return
        if not await self._end_session(self._address(peer), peer.client_id):
            logger.warning("could not log in again as %r to end its (empty, unsubscribed) session",
                           peer.client_id, extra={"peer": peer.bridge_id})
        own_account = self.bridge.broker_auth is not None and peer.username != self.bridge.address.username
        await database_sync_to_async(forget_peer)(peer.bridge_id, self.bridge.bridge_id,
                                                  peer.username if own_account else "")
        self.bridge.counts["peer_sessions_drained"] += 1
        logger.warning("drained bridge %s's session in %.1f s: %d messages (session present: %s); the broker "
                       "no longer routes to it", peer.bridge_id, time.monotonic() - started, session.received,
                       session.session_present, extra={"peer": peer.bridge_id, "count": session.received})

    async def _take_everything(self, peer, session, running):
        """Waits until the session is emptied; None then, else why it stopped first."""
        if not session.connected.is_set():
            return f"could not log in ({session.refused or 'no connection'})"
        renewed = time.monotonic()
        while not session.emptied():
            await asyncio.sleep(0.2)
            if running.done():
                return "the broker closed the connection (the bridge is back, or the broker restarted)"
            if time.monotonic() - renewed >= self.lease.renew_seconds:
                if not await database_sync_to_async(leases.renew_taken)(peer.bridge_id, self.bridge.bridge_id,
                                                                        self.lease.seconds):
                    return "its lease is no longer this bridge's (the bridge is back)"
                renewed = time.monotonic()
        return None

    async def _end_session(self, address, client_id):
        """Connects as the session's client with a clean session, which ends it, and leaves;
        False if it could not connect."""
        cleaner = MqttConnection(address, client_id, clean_session=True, reconnect=False)
        running = await connect_once(cleaner)
        ended = cleaner.connected.is_set()
        await cleaner.disconnect()
        await asyncio.gather(running, return_exceptions=True)
        return ended
