import time

FORGET_ABOVE = 10000


class ReceiveClock:
    """Receive times in epoch milliseconds that rise strictly for each device.

    Storage keeps one reading per device, key and ts, so two messages without a ts that arrive
    in the same millisecond must not get the same time: the second gets the next millisecond.
    """

    def __init__(self, clock=time.time):
        self._clock = clock
        self._last = {}  # device id -> the last millisecond handed out or used

    def now(self, device_id):
        """A receive time for a message of `device_id`, after any it was given before."""
        now = int(self._clock() * 1000)
        if len(self._last) > FORGET_ABOVE:
            # Devices last stamped before now cannot collide any more.
            self._last = {device: last for device, last in self._last.items() if last >= now}
        stamp = max(now, self._last.get(device_id, 0) + 1)
        self._last[device_id] = stamp
        return stamp

    def used(self, device_id, last_ms):
        """Notes that a message took the milliseconds up to `last_ms` (lists of entries without a ts)."""
        self._last[device_id] = max(self._last.get(device_id, 0), last_ms)
