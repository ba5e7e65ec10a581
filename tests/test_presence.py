"""devices.presence: a device's reported status, stored once per change however many bridges
report it, and its last_seen."""
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
from django.db import connection

from devices.models import Device
from devices.presence import record_status

pytestmark = pytest.mark.postgres

T0 = datetime(2025, 11, 24, 12, 0, tzinfo=dt_timezone.utc)


def at(seconds):
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def device(make_device, make_user):
    return make_device("d1", make_user("owner"))


def stored(device):
    found = Device.objects.get(pk=device.pk)
    return found.online, found.last_seen


def test_a_change_is_reported_changed_once_and_a_repeat_only_moves_last_seen(device):
    assert record_status("d1", True, at(1)) == (True, True)
    assert record_status("d1", True, at(2)) == (True, False)
    assert stored(device) == (True, at(2))
    assert record_status("d1", False, at(3)) == (True, True)
    assert record_status("d1", False, at(4)) == (True, False)
    assert stored(device) == (False, at(2))


def test_a_retained_status_corrects_online_but_is_no_news_otherwise(device):
    # The broker's copy, sent again at each subscription: it says nothing about when the
    # device was last heard from, unless it finds the device online that the hub had offline.
    record_status("d1", True, at(1))
    assert record_status("d1", True, at(2), retained=True) == (True, False)
    assert stored(device) == (True, at(1))
    assert record_status("d1", False, at(3), retained=True) == (True, True)
    assert record_status("d1", True, at(4), retained=True) == (True, True)
    assert stored(device) == (True, at(4))


def test_an_unknown_device_is_reported_unknown(device):
    assert record_status("nobody", True, at(1)) == (False, False)
    assert record_status("nobody", False, at(1), retained=True) == (False, False)


def test_bridges_recording_the_same_status_at_once_see_one_change(device):
    start = threading.Barrier(4)

    def record(_):
        start.wait()
        try:
            return record_status("d1", True, at(1))[1]
        finally:
            connection.close()

    with ThreadPoolExecutor(4) as pool:
        assert sorted(pool.map(record, range(4))) == [False, False, False, True]
