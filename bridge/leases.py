"""Leases: how bridges that share a broker tell a dead peer from a live one.

Each bridge renews its own lease (a BridgeLease row) every third of HUB_BRIDGE_LEASE_SECONDS.
Times are the database's (Now()), so the machines' clocks do not matter. A lapsed lease is
taken over by exactly one survivor, with an UPDATE whose condition is on the row itself:
PostgreSQL re-checks it after waiting for a racing update, SQLite serialises writers. The
survivor then drains the dead bridge's broker session (bridge.drain).
"""
import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from channels.db import database_sync_to_async
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Q
from django.db.models.functions import Now

from bridge.models import BridgeLease
from devices.models import BrokerAccount

logger = logging.getLogger("bridge")


def _until(seconds):
    return Now() + timedelta(seconds=seconds)


def renew_own(bridge_id, client_id, username, seconds):
    """Takes or renews a bridge's own lease. Returns None once the bridge holds it, else the id
    of the survivor that holds it, draining the bridge's session."""
    fields = {"client_id": client_id, "username": username, "holder": bridge_id, "expires": _until(seconds)}
    for _ in range(2):  # a lease deleted between the two statements: try again
        if BridgeLease.objects.filter(Q(holder=bridge_id) | Q(expires__lt=Now()), bridge_id=bridge_id).update(**fields):
            return None
        try:
            with transaction.atomic():
                BridgeLease.objects.create(bridge_id=bridge_id, **fields)
            return None
        except IntegrityError:
            holder = BridgeLease.objects.filter(bridge_id=bridge_id).values_list("holder", flat=True).first()
            if holder is not None:
                return holder
    return None


def adopt_former_account(username):
    """Before HUB_BRIDGE_ID, every bridge logged in as HUB_MQTT_URL's user itself, a session no
    bridge comes back to. If that account is still registered, gives it a lease that lapsed a
    second ago (one that expires this millisecond has not lapsed yet in it): a survivor then
    drains its session, ends it and removes the account."""
    if BrokerAccount.objects.filter(username=username, role=BrokerAccount.Role.BRIDGE).exists():
        BridgeLease.objects.get_or_create(
            bridge_id=username[:48],
            defaults={"client_id": username, "username": username, "holder": username, "expires": _until(-1)},
        )


def take_lapsed(bridge_id, seconds):
    """Takes over a lapsed lease of another bridge: the lease, now held by `bridge_id`, or None."""
    lapsed = BridgeLease.objects.filter(expires__lt=Now()).exclude(bridge_id=bridge_id).order_by("expires")
    for peer in lapsed.values_list("bridge_id", flat=True)[:10]:
        taken = BridgeLease.objects.filter(bridge_id=peer, expires__lt=Now()).update(holder=bridge_id, expires=_until(seconds))
        if taken:
            return BridgeLease.objects.filter(bridge_id=peer, holder=bridge_id).first()
    return None


def renew_taken(peer_id, holder, seconds):
    """Renews a lease taken over from `peer_id`; False if it is no longer `holder`'s."""
    return bool(BridgeLease.objects.filter(bridge_id=peer_id, holder=holder).update(expires=_until(seconds)))


def hand_back(peer_id, holder, seconds):
    """Gives a lease taken over back to its bridge, as alive: if it is not, it lapses again."""
    BridgeLease.objects.filter(bridge_id=peer_id, holder=holder).update(holder=peer_id, expires=_until(seconds))


def release(peer_id, holder):
    """Removes the lease of a bridge whose session is drained and ended; True if it was `holder`'s."""
    deleted, _ = BridgeLease.objects.filter(bridge_id=peer_id, holder=holder).delete()
    return bool(deleted)


class OwnLease:
    """This bridge's own lease, renewed every third of `seconds`."""

    def __init__(self, bridge_id, client_id, username, seconds):
        self.bridge_id = bridge_id
        self.client_id = client_id
        self.username = username or ""
        self.seconds = seconds
        self.renew_seconds = seconds / 3
        self._held_since = None  # time.monotonic() since when every renewal has succeeded in time
        self._renewed_at = None
        self._drained_by = None
        # A thread (and database connection) of its own: a renewal must not wait behind a flush
        # that holds the bridge's database thread. A slow flush is no dead bridge.
        self._renewals = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lease")

    async def take(self):
        """Takes the lease, waiting while a survivor drains this bridge's session (until it is done,
        or its lease on it lapses), so that the bridge does not take its session back half-way. A
        database error does not wait: without the database nothing is drained, nor stored."""
        while True:
            try:
                if await self._renew():
                    return
            except DatabaseError as error:
                logger.error("could not take this bridge's lease (%s); connecting anyway", error)
                return
            await asyncio.sleep(self.renew_seconds)

    async def renew_forever(self):
        while True:
            await asyncio.sleep(self.renew_seconds)
            try:
                await self._renew()
            except DatabaseError as error:
                self._held_since = None
                logger.error("could not renew this bridge's lease: %s", error)

    def held_for(self):
        """Seconds this bridge has held its lease without a gap; 0 when it does not."""
        if self._held_since is None or time.monotonic() - self._renewed_at > self.seconds:
            return 0.0
        return time.monotonic() - self._held_since

    async def _renew(self):
        renew = database_sync_to_async(renew_own, thread_sensitive=False, executor=self._renewals)
        holder = await renew(self.bridge_id, self.client_id, self.username, self.seconds)
        now = time.monotonic()
        if holder is not None:
            self._held_since = None
            if holder != self._drained_by:
                logger.warning("bridge %s is draining this bridge's broker session; waiting for it to finish", holder)
            self._drained_by = holder
            return False
        if self._held_since is None or now - self._renewed_at > self.seconds:
            self._held_since = now
        self._renewed_at, self._drained_by = now, None
        return True
