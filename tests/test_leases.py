"""Bridge leases in the database (bridge.leases): a lapsed lease is taken over by exactly one of
many survivors racing for it, a bridge that comes back waits for the survivor draining it, and
the account all bridges shared before HUB_BRIDGE_ID is drained and removed."""
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from bridge import leases
from bridge.drain import forget_peer
from bridge.models import BridgeLease
from devices.credentials import ensure_account
from devices.models import BrokerAccount

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

SECONDS = 10


def lapse(bridge_id):
    BridgeLease.objects.filter(bridge_id=bridge_id).update(expires=timezone.now() - timedelta(seconds=1))


def test_a_lapsed_lease_is_taken_over_by_exactly_one_of_the_survivors_racing_for_it():
    for round in range(5):
        dead = f"dead-{round}"
        assert leases.renew_own(dead, f"client-{dead}", f"hub.bridge.{dead}", SECONDS) is None
        assert leases.take_lapsed("survivor-0", SECONDS) is None, "a lease that has not lapsed is nobody's to take"
        lapse(dead)
        start, won = threading.Barrier(4), []

        def contend(name):
            try:
                start.wait()
                lease = leases.take_lapsed(name, SECONDS)
                if lease is not None:
                    won.append((name, lease.bridge_id, lease.username))
            finally:
                connection.close()

        threads = [threading.Thread(target=contend, args=(f"survivor-{n}",)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(won) == 1 and won[0][1:] == (dead, f"hub.bridge.{dead}")
        assert BridgeLease.objects.get(bridge_id=dead).holder == won[0][0]
        BridgeLease.objects.filter(bridge_id=dead).delete()


def test_a_bridge_that_comes_back_waits_for_the_drain_and_is_never_locked_out():
    assert leases.renew_own("b1", "c1", "hub.bridge.b1", SECONDS) is None
    lapse("b1")
    assert leases.take_lapsed("b2", SECONDS).bridge_id == "b1"
    # Back while b2 drains its session: it waits, and b2 keeps its hold.
    assert leases.renew_own("b1", "c1", "hub.bridge.b1", SECONDS) == "b2"
    assert leases.renew_taken("b1", "b2", SECONDS)
    # b2 gives up (the broker closed its connection): b1 holds its lease again, b2 no longer.
    leases.hand_back("b1", "b2", SECONDS)
    assert leases.renew_own("b1", "c1", "hub.bridge.b1", SECONDS) is None
    assert not leases.renew_taken("b1", "b2", SECONDS)
    # A drainer that stalls past its lease loses it to the bridge it drains.
    lapse("b1")
    assert leases.take_lapsed("b2", SECONDS).bridge_id == "b1"
    lapse("b1")
    assert leases.renew_own("b1", "c1", "hub.bridge.b1", SECONDS) is None
    assert not leases.release("b1", "b2") and BridgeLease.objects.filter(bridge_id="b1").exists()


def test_the_account_all_bridges_shared_before_is_drained_once_and_removed():
    leases.adopt_former_account("hub.bridge")
    assert not BridgeLease.objects.exists(), "no such account: nothing to drain"
    ensure_account("hub.bridge", "secret", BrokerAccount.Role.BRIDGE)
    leases.adopt_former_account("hub.bridge")
    leases.adopt_former_account("hub.bridge")
    lease = leases.take_lapsed("b1", SECONDS)
    assert (lease.bridge_id, lease.client_id, lease.username) == ("hub.bridge", "hub.bridge", "hub.bridge")
    forget_peer(lease.bridge_id, "b1", lease.username)
    assert not BridgeLease.objects.exists() and not BrokerAccount.objects.filter(username="hub.bridge").exists()
