"""The history's upkeep, run by the bridge as supervised tasks (hub.tasks): the rollup job, which
recomputes marked minutes as readings arrive, and retention, which once every
RETENTION_EVERY_SECONDS creates the coming days' partitions (PostgreSQL) and deletes what has
expired. Both count their progress for the bridge's metrics.

On SQLite both run in the bridge's database thread, between its flushes: SQLite has one writer at
a time. On PostgreSQL they run in a thread of their own, on a connection opened for each pass,
so that a flush never waits behind them: a batch of MARKS_PER_PASS minutes takes tens of
milliseconds there, and a minute's marks all come due together."""
import asyncio
import logging
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.db import connection

from telemetry import partitions, retention, rollups

logger = logging.getLogger("telemetry.upkeep")

ROLLUP_IDLE_SECONDS = 1.0
RETENTION_EVERY_SECONDS = 600.0


def now_ms():
    return int(time.time() * 1000)


class Upkeep:
    """Progress of both jobs: counts, the marks left after the last rollup pass, and the
    time.monotonic() of each job's last completed pass."""

    def __init__(self, clock=now_ms):
        self.clock = clock
        self.counts = Counter()
        self.marked = 0
        self.rolled_at = None
        self.retained_at = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="upkeep")

    async def _in_database(self, function, *args):
        """Calls `function` where the jobs reach the database (the module's docstring)."""
        if connection.vendor != "postgresql":
            return await database_sync_to_async(function)(*args)
        return await sync_to_async(function, thread_sensitive=False, executor=self._thread)(*args)

    @asynccontextmanager
    async def _pass(self):
        """One pass of a job. On PostgreSQL its calls share the jobs' thread's connection, closed
        as the pass ends (or is cancelled, once the call running in the thread returns): left
        open, it would outlive the bridge."""
        try:
            yield
        finally:
            if connection.vendor == "postgresql":
                await self._in_database(_close_connection)

    async def roll_up_forever(self):
        while True:
            await self.roll_up_pass()
            await asyncio.sleep(ROLLUP_IDLE_SECONDS)

    async def roll_up_pass(self):
        """Rolls up every marked minute, a batch at a time, until none is left."""
        async with self._pass():
            while True:
                rolled, dropped = await self._in_database(rollups.roll_up_marked, self.clock(), rollups.MARKS_PER_PASS)
                self.counts["minutes_rolled_up"] += rolled
                if dropped:
                    self.counts["marks_dropped"] += dropped
                    logger.warning("dropped %d rollup marks of minutes older than their raw retention", dropped)
                if rolled + dropped < rollups.MARKS_PER_PASS:
                    break
            self.marked = await self._in_database(rollups.marked_count)
        self.rolled_at = time.monotonic()

    async def retain_forever(self):
        while True:
            await self.retention_pass()
            await asyncio.sleep(RETENTION_EVERY_SECONDS)

    async def retention_pass(self):
        """Creates the partitions of today and the next AHEAD_DAYS days, drops expired days whole,
        then deletes every other expired row, a small batch per transaction, letting flushes run between."""
        async with self._pass():
            started = time.monotonic()
            created = await self._in_database(partitions.ensure_ahead, self.clock())
            if created:
                logger.info("created partitions %s", ", ".join(created))
            deleted = Counter(raw=await self._in_database(retention.drop_expired_days, self.clock()))
            for resolution, device_id, key, before in await self._in_database(retention.expired_series, self.clock()):
                while True:
                    count = await self._in_database(
                        retention.delete_expired, resolution, device_id, key, before, retention.DELETE_BATCH
                    )
                    deleted[resolution] += count
                    if count < retention.DELETE_BATCH:
                        break
            for resolution, count in deleted.items():
                self.counts[f"expired_{resolution}"] += count
        self.retained_at = time.monotonic()
        logger.info("retention pass: deleted %d raw readings, %d minute and %d hour rollups in %.1f s",
                    deleted["raw"], deleted["minute"], deleted["hour"], self.retained_at - started)


def _close_connection():
    connection.close()
