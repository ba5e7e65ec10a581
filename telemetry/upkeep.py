"""The history's upkeep, run by the bridge as supervised tasks (hub.tasks): the rollup job, which
recomputes marked minutes as readings arrive, and retention, which once every
RETENTION_EVERY_SECONDS creates the coming days' partitions (PostgreSQL) and deletes what has
expired. Both count their progress for the bridge's metrics."""
import asyncio
import logging
import time
from collections import Counter

from channels.db import database_sync_to_async

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

    async def roll_up_forever(self):
        while True:
            await self.roll_up_pass()
            await asyncio.sleep(ROLLUP_IDLE_SECONDS)

    async def roll_up_pass(self):
        """Rolls up every marked minute, a batch at a time, until none is left."""
        while True:
            rolled, dropped = await database_sync_to_async(rollups.roll_up_marked)(self.clock(), rollups.MARKS_PER_PASS)
            self.counts["minutes_rolled_up"] += rolled
            if dropped:
                self.counts["marks_dropped"] += dropped
                logger.warning("dropped %d rollup marks of minutes older than their raw retention", dropped)
            if rolled + dropped < rollups.MARKS_PER_PASS:
                break
        self.marked = await database_sync_to_async(rollups.marked_count)()
        self.rolled_at = time.monotonic()

    async def retain_forever(self):
        while True:
            await self.retention_pass()
            await asyncio.sleep(RETENTION_EVERY_SECONDS)

    async def retention_pass(self):
        """Creates the partitions of today and the next AHEAD_DAYS days, drops expired days whole,
        then deletes every other expired row, a small batch per transaction, letting flushes run between."""
        started = time.monotonic()
        created = await database_sync_to_async(partitions.ensure_ahead)(self.clock())
        if created:
            logger.info("created partitions %s", ", ".join(created))
        deleted = Counter(raw=await database_sync_to_async(retention.drop_expired_days)(self.clock()))
        for resolution, device_id, key, before in await database_sync_to_async(retention.expired_series)(self.clock()):
            while True:
                count = await database_sync_to_async(retention.delete_expired)(
                    resolution, device_id, key, before, retention.DELETE_BATCH
                )
                deleted[resolution] += count
                if count < retention.DELETE_BATCH:
                    break
        for resolution, count in deleted.items():
            self.counts[f"expired_{resolution}"] += count
        self.retained_at = time.monotonic()
        logger.info("retention pass: deleted %d raw readings, %d minute and %d hour rollups in %.1f s",
                    deleted["raw"], deleted["minute"], deleted["hour"], self.retained_at - started)
