import asyncio
from collections import Counter, deque

# daphne refuses to send a websocket message over 1 MiB (its websocket_max_message_size), and
# a refused send would end the socket's sender. 256 Ki characters is at most 1 MiB of UTF-8.
MAX_MESSAGE_CHARS = 256 * 1024


class Outbox:
    """Frames waiting to go out on one websocket, never more than `limit`.

    When a dashboard falls behind, the oldest frames give way and are counted per device,
    so the client can be told what it missed instead of the server's memory growing. A frame
    too large for one websocket message is counted the same way and never queued.
    """

    def __init__(self, limit, max_frame_chars=MAX_MESSAGE_CHARS):
        self.limit = limit
        self.max_frame_chars = max_frame_chars
        self.ready = asyncio.Event()
        self._frames = deque()
        self._dropped = Counter()

    def put(self, device_id, text):
        if len(text) > self.max_frame_chars:
            self._dropped[device_id] += 1
            self.ready.set()
            return
        if len(self._frames) >= self.limit:
            dropped_device, _ = self._frames.popleft()
            self._dropped[dropped_device] += 1
        self._frames.append((device_id, text))
        self.ready.set()

    def take(self):
        """The waiting frames' texts, and {device id: frames dropped} since the last take."""
        texts = [text for _, text in self._frames]
        dropped = dict(self._dropped)
        self._frames.clear()
        self._dropped.clear()
        self.ready.clear()
        return texts, dropped

    def __len__(self):
        return len(self._frames)
