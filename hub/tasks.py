"""Long-running tasks that never die silently.

A task of a long-running process (the bridge's flush loop, a web process's live relay) that
raises is logged with its traceback and run again after a backoff, so one bad message or a
bug hit once does not leave a process that looks alive and does nothing. Each crash is
counted by task name, for the metrics and for health checks.
"""
import asyncio
import logging
import time
from collections import Counter

logger = logging.getLogger("hub.tasks")

FIRST_DELAY_SECONDS = 0.5
MAX_DELAY_SECONDS = 30.0
# A task that ran this long before it crashed starts its backoff afresh.
HEALTHY_SECONDS = 60.0

crashes = Counter()  # task name -> times it raised or returned


def restart_delay(failures):
    """The wait before the next run after `failures` crashes in a row: doubling, capped."""
    return min(MAX_DELAY_SECONDS, FIRST_DELAY_SECONDS * 2 ** (failures - 1))


async def supervise(name, run, finished=None):
    """Runs `run()`, a coroutine function meant to run until cancelled, again and again: a
    crash (or a return) is logged and counted, and the next run waits restart_delay().

    `finished`, if given, is a callable: a run that returns while it is true ends the task (a
    task asked to finish its work and end, rather than cancelled)."""
    failures = 0
    while True:
        started = time.monotonic()
        try:
            await run()
            if finished is not None and finished():
                return
            logger.error("task %s returned; it should run until stopped", name, extra={"task": name})
        except asyncio.CancelledError:
            raise
        except Exception:
            if asyncio.current_task().cancelling():
                raise asyncio.CancelledError  # a cancellation that `run()` turned into an error
            logger.exception("task %s crashed", name, extra={"task": name})
        crashes[name] += 1
        failures = 1 if time.monotonic() - started > HEALTHY_SECONDS else failures + 1
        delay = restart_delay(failures)
        logger.info("restarting task %s in %.1f s (crash %d in a row)", name, delay, failures, extra={"task": name})
        await asyncio.sleep(delay)


def start_supervised(name, run, finished=None):
    """A task running `supervise(name, run, finished)`: cancel it to stop it."""
    return asyncio.create_task(supervise(name, run, finished), name=name)


async def cancel_and_wait(tasks, patience=1.0):
    """Cancels `tasks` and returns once every one has ended, cancelling again every `patience`
    seconds those that have not. redis-py can swallow a cancellation that lands while it
    connects (channels-redis's first receive on a channel, cancelled within a few milliseconds
    of its start, went on waiting about one time in seven), and a task that missed its cancel
    would wait for ever and keep its process from exiting."""
    pending = set(tasks)
    for task in pending:
        if not task.cancelling():  # one cancelled already is left to finish its cleanup
            task.cancel()
    while pending:
        _, pending = await asyncio.wait(pending, timeout=patience)
        for task in pending:
            logger.warning("task %s did not end when cancelled; cancelling it again", task.get_name(),
                           extra={"task": task.get_name()})
            task.cancel()
