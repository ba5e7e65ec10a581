"""Running the rollup job to the end, as the bridge does in the background."""
import time

from telemetry.models import RollupMark
from telemetry.rollups import MARKS_PER_PASS, MINUTE_MS, SETTLE_MS, roll_up_marked

LATER = 365 * 86_400_000


def roll_up_everything(now_ms=None):
    """Rolls up every minute settled at `now_ms` (a year from now unless given). Runs until none
    is marked, as a bridge's job may hold the lock for a while (roll_up_marked then does nothing)."""
    now_ms = int(time.time() * 1000) + LATER if now_ms is None else now_ms
    while RollupMark.objects.filter(minute__lte=now_ms - MINUTE_MS - SETTLE_MS).exists():
        roll_up_marked(now_ms, MARKS_PER_PASS)
