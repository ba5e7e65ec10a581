"""Counting and logging the messages the bridge drops, without letting a flood flood the log."""
import logging
import time
from collections import Counter

logger = logging.getLogger("bridge.rejects")


class RejectLog:
    """Counts every dropped message by reason; logs at most one line per device and reason
    per `interval` seconds, then says how many it held back."""

    max_tracked = 10000

    def __init__(self, interval=10.0, clock=time.monotonic):
        self.interval = interval
        self.clock = clock
        self.counts = Counter()
        self._last_logged = {}
        self._held_back = Counter()

    def reject(self, device_id, reason, detail, count=1):
        self.counts[reason] += count
        key = (device_id, reason)
        now = self.clock()
        last = self._last_logged.get(key)
        if last is not None and now - last < self.interval:
            self._held_back[key] += count
            return
        held_back = self._held_back.pop(key, 0)
        if len(self._last_logged) >= self.max_tracked:
            self._forget_before(now - self.interval)
        since = f" ({held_back} more like it held back)" if held_back else ""
        # count: the messages this line stands for, itself and those held back since the last.
        logger.warning("dropped a message from device %s: %s: %s%s", device_id, reason, detail, since,
                       extra={"device": device_id, "reason": reason, "count": count + held_back})
        self._last_logged[key] = now

    def _forget_before(self, moment):
        for key, logged in list(self._last_logged.items()):
            if logged < moment:
                del self._last_logged[key]
                self._held_back.pop(key, None)
