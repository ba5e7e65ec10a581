"""SQLite's WAL checkpoints, kept off the flush's path.

In WAL mode a commit appends the pages it changed to the log, and a checkpoint copies them back
into the database file. By default the commit that takes the log past `wal_autocheckpoint`
pages does that itself: the flush that happens to cross it waits while thousands of pages are
copied and synced, and every reading behind it waits too (a stall of 400-550 ms every 4-5 s on
the slowest machine, docs/performance.md, "Checkpoints off the flush's path").

The bridge, SQLite's one busy writer, runs a WalCheckpointer instead: PASSIVE checkpoints on a
connection and thread of their own, one after another while the log holds pages not yet copied.
A PASSIVE checkpoint never blocks the writer, nor waits for it. When the writer's own
checkpoint comes due, nearly everything is copied already, so it is quick, and the log starts
over at the next commit. The writer's `wal_autocheckpoint` (hub.settings) stays the bound on the
log, should this thread fall behind or stop.
"""
import asyncio
import logging
import sqlite3
from concurrent.futures import ThreadPoolExecutor

from django.db import connections

logger = logging.getLogger("telemetry.checkpoints")

# Once the log is copied whole, the wait before looking again.
IDLE_SECONDS = 0.05
# The salts in the log's header (sqlite.org/fileformat2.html#walformat). SQLite changes them each
# time the log starts over, whichever connection starts it. (Not the header's checkpoint sequence
# number: each connection writes its own count there, so with two writers it goes back and forth.)
SALTS = slice(16, 24)


def log_salts(path):
    """The salts of the write-ahead log of the database at `path`, None while it has no header."""
    try:
        with open(f"{path}-wal", "rb") as log:
            header = log.read(32)
    except OSError:
        return None
    return header[SALTS] if len(header) == 32 else None


class WalCheckpointer:
    """Checkpoints the WAL of database `alias` (SQLite) for as long as run_forever() runs."""

    def __init__(self, alias="default"):
        self.alias = alias
        self._connection = None
        self._copied = None  # the log's pages copied, as the last checkpoint left them
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wal-checkpoint")

    async def run_forever(self):
        loop = asyncio.get_running_loop()
        path = connections[self.alias].settings_dict["NAME"]
        logger.info("checkpointing the write-ahead log of %s on a thread of its own", path)
        while True:
            if not await loop.run_in_executor(self._thread, self.checkpoint, path):
                await asyncio.sleep(IDLE_SECONDS)

    def checkpoint(self, path):
        """One PASSIVE checkpoint. True when another is worth running at once: this one copied
        pages and left some. Not when the log is copied whole (or not in use), nor when another
        connection is checkpointing it, nor when nothing more could be copied (a reader still
        uses those pages): spinning would only take the GIL from the bridge."""
        if self._connection is None:
            # Autocommit, and no busy handler: a checkpoint under way elsewhere is not waited for.
            self._connection = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
        busy, log_pages, copied = self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        progressed, self._copied = copied != self._copied, copied
        return not busy and progressed and copied < log_pages
