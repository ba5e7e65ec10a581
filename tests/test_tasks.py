"""hub.tasks.supervise: a long-running task that crashes is logged, counted and run again."""
import asyncio
import logging

import pytest

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
