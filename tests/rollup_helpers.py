"""Running the rollup job to the end, as the bridge does in the background."""
import time

from telemetry.rollups import MARKS_PER_PASS, roll_up_marked

LATER = 365 * 86_400_000


def roll_up_everything(now_ms=None):
    """Rolls up every marked minute, settled or not (the clock is a year ahead unless given)."""
    now_ms = int(time.time() * 1000) + LATER if now_ms is None else now_ms
    while sum(roll_up_marked(now_ms, MARKS_PER_PASS)) == MARKS_PER_PASS:
        pass
