"""What one dashboard socket may send the hub: frames and bytes a second, with a burst.

daphne hands every websocket message to the consumer through a queue without a bound, and a
frame costs its decoding, a parse and maybe database queries: one signed-in socket sending
large subscribe frames as fast as it could grew a web process from 385 MB to 1,277 MB in
20 s. So a socket's frames are counted, by their size, before anything else is done with
them. Past its budget a frame is dropped unread and the client is told once (`rate_limited`);
a client that goes on sending as much again before its budget has room is closed with 1008
(policy violation).
"""
import time

ALLOWED, REFUSED, DROPPED, EXCEEDED = "allowed", "refused", "dropped", "exceeded"


class InboundBudget:
    """Two token buckets, frames and bytes, refilled at steady rates and holding
    `burst_seconds` of each."""

    def __init__(self, frames_per_second, bytes_per_second, burst_seconds, clock=time.monotonic):
        self.frame_rate = frames_per_second
        self.byte_rate = bytes_per_second
        self.max_frames = frames_per_second * burst_seconds
        self.max_bytes = bytes_per_second * burst_seconds
        self.frames = float(self.max_frames)
        self.bytes = float(self.max_bytes)
        self.clock = clock
        self.updated = clock()
        self.refused = 0  # frames refused since the last one allowed

    def spend(self, size):
        """Counts a frame of `size` bytes: ALLOWED within budget; REFUSED, the first frame over
        it (tell the client); DROPPED, the next ones; EXCEEDED once a second's worth of frames
        (frames_per_second) more has been refused (close the socket)."""
        now = self.clock()
        elapsed = now - self.updated
        self.updated = now
        self.frames = min(self.max_frames, self.frames + elapsed * self.frame_rate)
        self.bytes = min(self.max_bytes, self.bytes + elapsed * self.byte_rate)
        if self.frames >= 1 and self.bytes >= size:
            self.frames -= 1
            self.bytes -= size
            self.refused = 0
            return ALLOWED
        self.refused += 1
        if self.refused == 1:
            return REFUSED
        if self.refused > self.frame_rate:
            return EXCEEDED
        return DROPPED


def utf8_size(text):
    """The bytes of `text` on the wire, without encoding it when it is ASCII (isascii() is a
    flag lookup for Python's strings)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
