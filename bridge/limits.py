"""Per-device budgets, so one noisy device cannot slow the bridge down for everyone else.

Each device has two token buckets, messages and payload bytes, refilled at a steady rate and
holding a minute's worth: a device may burst, and a bridge draining the broker's backlog after
an outage (which receives minutes of readings in seconds) stays within budget for any device
that kept to its rate. A message over budget is dropped and counted; the bridge acknowledges it
so it never holds up the shared session.
"""
import time

BURST_SECONDS = 60.0


class DeviceBudgets:
    def __init__(self, messages_per_second, bytes_per_second, clock=time.monotonic):
        self.message_rate = messages_per_second
        self.byte_rate = bytes_per_second
        self.clock = clock
        self._buckets = {}  # device id: [messages left, bytes left, last refill]

    def allow(self, device_id, size):
        """Spends one message and `size` bytes of the device's budget; False if it has too little."""
        now = self.clock()
        bucket = self._buckets.get(device_id)
        if bucket is None:
            bucket = self._buckets[device_id] = [self.message_rate * BURST_SECONDS, self.byte_rate * BURST_SECONDS, now]
        else:
            elapsed = now - bucket[2]
            bucket[0] = min(self.message_rate * BURST_SECONDS, bucket[0] + elapsed * self.message_rate)
            bucket[1] = min(self.byte_rate * BURST_SECONDS, bucket[1] + elapsed * self.byte_rate)
            bucket[2] = now
        if bucket[0] < 1 or bucket[1] < size:
            return False
        bucket[0] -= 1
        bucket[1] -= size
        return True

    def forget_idle(self):
        """Drops the buckets that are full again: their devices are back within budget."""
        now = self.clock()
        full = [
            device_id for device_id, (messages, size, last) in self._buckets.items()
            if messages + (now - last) * self.message_rate >= self.message_rate * BURST_SECONDS
            and size + (now - last) * self.byte_rate >= self.byte_rate * BURST_SECONDS
        ]
        for device_id in full:
            del self._buckets[device_id]
        return len(full)
