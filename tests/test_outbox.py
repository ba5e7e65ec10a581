"""The bounded queue of frames waiting for one dashboard (telemetry/outbox.py)."""
import asyncio

import pytest

from telemetry.outbox import Outbox


def readings(device_id, seq):
    """The text of a readings frame, as the relay hands it to a socket."""
    return f'{{"type": "readings", "device": "{device_id}", "seq": {seq}, "items": []}}'


def test_a_new_outbox_is_empty_and_not_ready():
    outbox = Outbox(limit=3)
    assert len(outbox) == 0
    assert not outbox.ready.is_set()
    assert outbox.take() == ([], {})


def test_frames_come_out_in_the_order_they_were_put():
    outbox = Outbox(limit=10)
    outbox.put("d1", readings("d1", 1))
    outbox.put("d2", readings("d2", 7))
    outbox.put("d1", readings("d1", 2))
    assert len(outbox) == 3
    assert outbox.take() == ([readings("d1", 1), readings("d2", 7), readings("d1", 2)], {})


def test_a_put_makes_the_outbox_ready_and_a_take_empties_it():
    outbox = Outbox(limit=10)
    outbox.put("d1", readings("d1", 1))
    assert outbox.ready.is_set()
    outbox.take()
    assert len(outbox) == 0
    assert not outbox.ready.is_set()
    assert outbox.take() == ([], {})


async def test_a_put_wakes_the_sender_waiting_for_frames():
    outbox = Outbox(limit=3)
    sender = asyncio.create_task(outbox.ready.wait())
    done, _ = await asyncio.wait([sender], timeout=0)
    assert not done
    outbox.put("d1", readings("d1", 1))
    assert await asyncio.wait_for(sender, timeout=1) is True


def test_an_outbox_filled_to_its_limit_drops_nothing():
    outbox = Outbox(limit=3)
    for seq in (1, 2, 3):
        outbox.put("d1", readings("d1", seq))
    assert outbox.take() == ([readings("d1", 1), readings("d1", 2), readings("d1", 3)], {})


def test_when_full_the_oldest_frame_gives_way_and_is_counted():
    outbox = Outbox(limit=3)
    for seq in (1, 2, 3, 4):
        outbox.put("d1", readings("d1", seq))
    assert len(outbox) == 3
    assert outbox.take() == ([readings("d1", 2), readings("d1", 3), readings("d1", 4)], {"d1": 1})


@pytest.mark.parametrize("puts, kept, dropped", [
    pytest.param(
        [("d1", 1), ("d2", 1), ("d1", 2), ("d3", 1), ("d2", 2)],
        [("d1", 2), ("d3", 1), ("d2", 2)],
        {"d1": 1, "d2": 1},
        id="one-each-from-two-devices"),
    pytest.param(
        [("d1", 1), ("d1", 2), ("d1", 3), ("d2", 1), ("d2", 2), ("d2", 3)],
        [("d2", 1), ("d2", 2), ("d2", 3)],
        {"d1": 3},
        id="a-burst-pushes-out-another-device"),
    pytest.param(
        [("d1", seq) for seq in range(1, 101)],
        [("d1", 98), ("d1", 99), ("d1", 100)],
        {"d1": 97},
        id="a-long-burst-from-one-device"),
])
def test_drops_are_counted_per_device_of_the_frame_dropped(puts, kept, dropped):
    outbox = Outbox(limit=3)
    for device_id, seq in puts:
        outbox.put(device_id, readings(device_id, seq))
    assert outbox.take() == ([readings(device_id, seq) for device_id, seq in kept], dropped)


def test_a_take_reports_drops_once_and_then_counts_afresh():
    outbox = Outbox(limit=2)
    for seq in (1, 2, 3, 4):
        outbox.put("d1", readings("d1", seq))
    assert outbox.take()[1] == {"d1": 2}
    outbox.put("d1", readings("d1", 5))
    assert outbox.take() == ([readings("d1", 5)], {})
    for seq in (6, 7, 8):
        outbox.put("d2", readings("d2", seq))
    assert outbox.take() == ([readings("d2", 7), readings("d2", 8)], {"d2": 1})


def test_an_outbox_of_one_keeps_only_the_newest_frame():
    outbox = Outbox(limit=1)
    for seq in (1, 2, 3):
        outbox.put("d1", readings("d1", seq))
    assert outbox.take() == ([readings("d1", 3)], {"d1": 2})


def test_what_take_returns_is_not_changed_by_later_puts():
    outbox = Outbox(limit=1)
    outbox.put("d1", readings("d1", 1))
    outbox.put("d1", readings("d1", 2))
    texts, dropped = outbox.take()
    outbox.put("d1", readings("d1", 3))
    outbox.put("d1", readings("d1", 4))
    assert (texts, dropped) == ([readings("d1", 2)], {"d1": 1})


def test_a_frame_too_large_for_one_websocket_message_is_counted_as_dropped_and_never_sent():
    outbox = Outbox(limit=3, max_frame_chars=100)
    outbox.put("d1", readings("d1", 1))
    outbox.put("d1", '{"type": "readings", "items": "' + "x" * 100 + '"}')
    assert outbox.ready.is_set()
    assert outbox.take() == ([readings("d1", 1)], {"d1": 1})
