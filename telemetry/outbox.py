import asyncio
from collections import Counter, deque

from telemetry.metrics import FRAMES_DROPPED, FRAMES_SENT

# daphne refuses to send a websocket message over 1 MiB (its websocket_max_message_size), and
# a refused send would end the socket's sender. 256 Ki characters is at most 1 MiB of UTF-8.
MAX_MESSAGE_CHARS = 256 * 1024


class Outbox:
    """Frames waiting to go out on one websocket, never more than `limit`.

    When a dashboard falls behind, the oldest frames give way and are counted per device,
    so the client can be told what it missed instead of the server's memory growing. A frame
    too large for one websocket message is counted the same way and never sent.

    Frames are kept as the relay hands them over, (device id, seq, text) with seq None for
    frames other than readings, so a busy fleet socket's share of a flush is queued in one step.
    """

    def __init__(self, limit, max_frame_chars=MAX_MESSAGE_CHARS):
        self.limit = limit
        self.max_frame_chars = max_frame_chars
        self.ready = asyncio.Event()
        self._frames = deque()
        self._dropped = Counter()

    def put(self, device_id, text):
        self.extend([(device_id, None, text)])

    def extend(self, frames):
        """Queues (device id, seq, text) frames, oldest first."""
        self._frames.extend(frames)
        for _ in range(len(self._frames) - self.limit):
            self._dropped[self._frames.popleft()[0]] += 1
        self.ready.set()

    def take(self):
        """The waiting frames' texts, and {device id: frames dropped} since the last take."""
        limit = self.max_frame_chars
        texts = [frame[2] for frame in self._frames if len(frame[2]) <= limit]
        if len(texts) < len(self._frames):
            self._dropped.update(frame[0] for frame in self._frames if len(frame[2]) > limit)
        dropped = dict(self._dropped)
        self._frames.clear()
        self._dropped.clear()
        self.ready.clear()
        FRAMES_SENT.inc(len(texts))
        FRAMES_DROPPED.inc(sum(dropped.values()))
        return texts, dropped

    def __len__(self):
        return len(self._frames)
