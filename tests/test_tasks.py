"""hub.tasks: a long-running task that crashes is logged, counted and run again; one that is
stopped ends even if what it awaits swallows the cancellation."""
import asyncio
import logging

import pytest
from channels_redis.pubsub import RedisPubSubChannelLayer

from hub import tasks


@pytest.fixture(autouse=True)
def quick_restarts(monkeypatch):
    monkeypatch.setattr(tasks, "FIRST_DELAY_SECONDS", 0.01)


async def test_a_crashing_task_is_logged_with_its_traceback_and_run_again(caplog):
    runs = []
    third_run = asyncio.Event()

    async def flaky():
        runs.append(1)
        if len(runs) < 3:
            raise ValueError(f"bad message {len(runs)}")
        third_run.set()
        await asyncio.Event().wait()

    before = tasks.crashes["flaky"]
    with caplog.at_level(logging.INFO, logger="hub.tasks"):
        task = tasks.start_supervised("flaky", flaky)
        await asyncio.wait_for(third_run.wait(), 5)
    assert tasks.crashes["flaky"] - before == 2
    crashed = [record for record in caplog.records if record.message == "task flaky crashed"]
    assert len(crashed) == 2 and "ValueError: bad message 1" in caplog.text
    assert crashed[0].exc_info is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(runs) == 3


async def test_a_task_that_returns_is_run_again():
    runs = asyncio.Queue()

    async def returns():
        await runs.put(1)

    task = tasks.start_supervised("returns", returns)
    for _ in range(2):
        await asyncio.wait_for(runs.get(), 5)
    task.cancel()


def test_restarts_back_off_to_a_cap():
    assert tasks.restart_delay(1) == tasks.FIRST_DELAY_SECONDS
    assert tasks.restart_delay(2) == 2 * tasks.FIRST_DELAY_SECONDS
    assert tasks.restart_delay(100) == tasks.MAX_DELAY_SECONDS


async def test_a_task_that_returns_once_finished_ends():
    runs = []
    finishing = False

    async def drains():
        runs.append(1)
        if not finishing:
            raise ValueError("not yet")

    task = tasks.start_supervised("drains", drains, finished=lambda: finishing)
    while not runs:
        await asyncio.sleep(0)
    finishing = True
    await asyncio.wait_for(task, 5)
    assert len(runs) == 2 and tasks.crashes["drains"] >= 1


async def test_a_task_whose_run_turns_its_cancellation_into_an_error_ends():
    started = asyncio.Event()

    async def converts():
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise ConnectionError("cancelled in the middle of a command")

    before = tasks.crashes["converts"]
    task = tasks.start_supervised("converts", converts)
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)
    assert tasks.crashes["converts"] == before


async def test_cancel_and_wait_cancels_again_a_task_that_swallowed_its_cancellation(caplog):
    swallowed = asyncio.Event()

    async def stubborn():
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            swallowed.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(stubborn(), name="stubborn")
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger="hub.tasks"):
        await asyncio.wait_for(tasks.cancel_and_wait([task], patience=0.05), 5)
    assert swallowed.is_set() and task.cancelled()
    assert "task stubborn did not end when cancelled; cancelling it again" in caplog.text


async def test_cancel_and_wait_lets_a_task_cancelled_already_finish_its_cleanup(caplog):
    cleaned_up = []

    async def tidy():
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await asyncio.sleep(0.02)  # as channels-redis unsubscribes from a channel
            cleaned_up.append(True)
            raise

    task = asyncio.create_task(tidy(), name="tidy")
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger="hub.tasks"):
        await asyncio.wait_for(tasks.cancel_and_wait([task], patience=1.0), 5)
    assert task.cancelled() and cleaned_up == [True]
    assert "did not end" not in caplog.text


async def test_a_channel_receive_cancelled_as_it_connects_ends_under_cancel_and_wait(redis_server):
    """The bridge's channel listener, stopped just after it started: channels-redis's first
    receive subscribes, and redis-py at times swallows a cancellation that lands then."""
    for attempt in range(60):
        layer = RedisPubSubChannelLayer(hosts=[redis_server.url])
        receiving = asyncio.create_task(layer.receive("bridge.commands"))
        await asyncio.sleep(attempt / 15_000)  # 0 to 4 ms into the subscription
        await asyncio.wait_for(tasks.cancel_and_wait([receiving], patience=0.2), 5)
        assert receiving.cancelled()
        await layer.flush()
