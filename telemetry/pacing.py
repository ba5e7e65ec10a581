"""How often a dashboard socket sends: a token bucket."""
import time


class SendPace:
    """At most `rate` sends a second on average, and up to `burst` back to back.

    A socket that gets a frame now and then sends each at once; a busy one waits between
    sends, and what gathers meanwhile goes out as one batch. (A fixed pause after every send
    made a device socket at 10 frames a second hold a frame for up to the whole pause.)
    """

    def __init__(self, rate, burst, clock=time.monotonic):
        self.interval = 1 / rate
        self.burst = burst
        self.clock = clock
        self.credit = float(burst)
        self.updated = clock()

    def delay(self):
        """Counts a send and returns the seconds to wait before making it (0: now)."""
        now = self.clock()
        self.credit = min(self.burst, self.credit + (now - self.updated) / self.interval)
        self.updated = now
        self.credit -= 1
        return max(0.0, -self.credit * self.interval)
