"""Counting and logging what the bridge drops (bridge/rejects.py), without a flood flooding the log."""
import logging

import pytest

from bridge.rejects import RejectLog

BAD_KEY = "key 'temp rature' is not 1-64 of A-Z a-z 0-9 _ . -"
UNKNOWN = "no device with this id is registered"


class FakeClock:
    """A monotonic clock the test moves by hand, in seconds."""

    def __init__(self, seconds=1000.0):
        self.seconds = seconds

    def __call__(self):
        return self.seconds


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def lines(caplog):
    """The messages RejectLog has logged so far, in order."""
    caplog.set_level(logging.WARNING, logger="bridge.rejects")

    def logged():
        return [record.getMessage() for record in caplog.records if record.name == "bridge.rejects"]

    return logged


def test_every_rejection_is_counted_by_reason(clock):
    rejects = RejectLog(clock=clock)
    rejects.reject("boiler-1", "bad_key", BAD_KEY)
    rejects.reject("boiler-1", "bad_key", BAD_KEY)
    rejects.reject("boiler-2", "bad_key", BAD_KEY)
    rejects.reject("-", "bad_topic", "not a device topic: 'spam'")
    rejects.reject("ghost-7", "unknown_device", UNKNOWN, count=40)
    assert rejects.counts == {"bad_key": 3, "bad_topic": 1, "unknown_device": 40}


def test_a_rejection_is_logged_as_a_warning_naming_the_device_the_reason_and_what_was_wrong(clock, caplog, lines):
    RejectLog(clock=clock).reject("boiler-1", "bad_key", BAD_KEY)
    assert lines() == [f"dropped a message from device boiler-1: bad_key: {BAD_KEY}"]
    assert [record.levelno for record in caplog.records] == [logging.WARNING]


def test_a_flood_from_one_device_logs_one_line_but_counts_every_message(clock, lines):
    rejects = RejectLog(clock=clock)
    for _ in range(10_000):
        rejects.reject("boiler-1", "bad_key", BAD_KEY)
        clock.seconds += 0.0005  # 2,000 messages a second: 5 s in all
    assert lines() == [f"dropped a message from device boiler-1: bad_key: {BAD_KEY}"]
    assert rejects.counts == {"bad_key": 10_000}


@pytest.mark.parametrize("second, expected", [
    pytest.param(("boiler-2", "bad_key", BAD_KEY), 2, id="another-device"),
    pytest.param(("boiler-1", "bad_value", "temp: expected a finite number"), 2, id="another-reason"),
    pytest.param(("boiler-1", "bad_key", "key '' is not 1-64 of A-Z a-z 0-9 _ . -"), 1, id="same-reason-other-detail"),
])
def test_the_limit_holds_per_device_and_reason(clock, lines, second, expected):
    rejects = RejectLog(clock=clock)
    rejects.reject("boiler-1", "bad_key", BAD_KEY)
    clock.seconds += 1
    rejects.reject(*second)
    assert len(lines()) == expected


@pytest.mark.parametrize("interval, later, logged", [
    pytest.param(10.0, 9.999, False, id="just-before-10s"),
    pytest.param(10.0, 10.0, True, id="at-10s"),
    pytest.param(10.0, 3600.0, True, id="an-hour-later"),
    pytest.param(2.0, 1.5, False, id="interval-2s-before"),
    pytest.param(2.0, 2.0, True, id="interval-2s-at"),
])
def test_the_same_device_and_reason_is_logged_again_once_the_interval_has_passed(clock, lines, interval, later, logged):
    rejects = RejectLog(interval=interval, clock=clock)
    rejects.reject("boiler-1", "bad_key", BAD_KEY)
    clock.seconds += later
    rejects.reject("boiler-1", "bad_key", BAD_KEY)
    assert len(lines()) == (2 if logged else 1)


def test_the_next_line_says_how_many_were_held_back(clock, lines):
    rejects = RejectLog(clock=clock)
    rejects.reject("boiler-1", "bad_key", BAD_KEY)
    for _ in range(3):
        clock.seconds += 2
        rejects.reject("boiler-1", "bad_key", BAD_KEY)
    clock.seconds += 5
    rejects.reject("boiler-1", "bad_key", BAD_KEY)
    assert lines() == [
        f"dropped a message from device boiler-1: bad_key: {BAD_KEY}",
        f"dropped a message from device boiler-1: bad_key: {BAD_KEY} (3 more like it held back)",
    ]


def test_the_interval_runs_from_the_last_line_logged_not_the_last_message(clock, lines):
    rejects = RejectLog(clock=clock)
    for _ in range(25):  # one message a second for 25 s: lines at 0 s, 10 s and 20 s
        rejects.reject("boiler-1", "bad_key", BAD_KEY)
        clock.seconds += 1
    assert lines() == [
        f"dropped a message from device boiler-1: bad_key: {BAD_KEY}",
        f"dropped a message from device boiler-1: bad_key: {BAD_KEY} (9 more like it held back)",
        f"dropped a message from device boiler-1: bad_key: {BAD_KEY} (9 more like it held back)",
    ]


def test_a_held_back_count_is_reported_once(clock, lines):
    rejects = RejectLog(clock=clock)
    rejects.reject("boiler-1", "bad_key", BAD_KEY)
    clock.seconds += 1
    rejects.reject("boiler-1", "bad_key", BAD_KEY)
    clock.seconds += 10
    rejects.reject("boiler-1", "bad_key", BAD_KEY)
    clock.seconds += 10
    rejects.reject("boiler-1", "bad_key", BAD_KEY)
    assert [line.endswith("(1 more like it held back)") for line in lines()] == [False, True, False]


def test_held_back_counts_are_kept_per_device_and_reason(clock, lines):
    rejects = RejectLog(clock=clock)
    rejects.reject("boiler-1", "bad_key", BAD_KEY)
    rejects.reject("boiler-2", "bad_key", BAD_KEY)
    clock.seconds += 1
    rejects.reject("boiler-1", "bad_key", BAD_KEY)
    rejects.reject("boiler-2", "bad_key", BAD_KEY)
    rejects.reject("boiler-2", "bad_key", BAD_KEY)
    clock.seconds += 10
    rejects.reject("boiler-2", "bad_key", BAD_KEY)
    rejects.reject("boiler-1", "bad_key", BAD_KEY)
    assert lines()[2:] == [
        f"dropped a message from device boiler-2: bad_key: {BAD_KEY} (2 more like it held back)",
        f"dropped a message from device boiler-1: bad_key: {BAD_KEY} (1 more like it held back)",
    ]


def test_messages_rejected_together_are_held_back_by_their_count(clock, lines):
    rejects = RejectLog(clock=clock)
    rejects.reject("ghost-7", "unknown_device", UNKNOWN, count=3)
    clock.seconds += 1
    rejects.reject("ghost-7", "unknown_device", UNKNOWN, count=40)
    clock.seconds += 10
    rejects.reject("ghost-7", "unknown_device", UNKNOWN)
    assert lines() == [
        f"dropped a message from device ghost-7: unknown_device: {UNKNOWN}",
        f"dropped a message from device ghost-7: unknown_device: {UNKNOWN} (40 more like it held back)",
    ]
    assert rejects.counts == {"unknown_device": 44}


def test_a_full_table_forgets_devices_last_logged_before_the_interval(clock, lines):
    rejects = RejectLog(clock=clock)
    rejects.max_tracked = 3
    for device_id in ("old-1", "old-2"):
        rejects.reject(device_id, "bad_key", BAD_KEY)
    clock.seconds += 20
    rejects.reject("recent", "bad_key", BAD_KEY)
    rejects.reject("new", "bad_key", BAD_KEY)  # the table is full: old-1 and old-2 go
    assert sorted(device_id for device_id, _ in rejects._last_logged) == ["new", "recent"]
    rejects.reject("recent", "bad_key", BAD_KEY)  # still within its interval
    assert len(lines()) == 4


def test_a_full_table_does_not_lose_the_held_back_count_of_the_line_it_logs(clock, lines):
    rejects = RejectLog(clock=clock)
    rejects.max_tracked = 2
    rejects.reject("boiler-1", "bad_key", BAD_KEY)
    clock.seconds += 1
    for _ in range(3):
        rejects.reject("boiler-1", "bad_key", BAD_KEY)
    rejects.reject("boiler-2", "bad_key", BAD_KEY)  # the table is now full
    clock.seconds += 20
    rejects.reject("boiler-1", "bad_key", BAD_KEY)
    assert lines()[-1] == f"dropped a message from device boiler-1: bad_key: {BAD_KEY} (3 more like it held back)"
