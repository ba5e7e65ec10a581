"""What a dashboard client process counts of the messages its sockets receive: readings, the
latency of each (its publish time `pub` to arrival), seq gaps per device, frames dropped.

A fan-out client process takes ~100,000 readings a second, a few hundred frames to a message,
and must not be what limits the benchmark. Parsing each message into Python objects and
counting reading by reading took most of its CPU, so a message made only of readings frames
is read with regular expressions over its text, and latencies are counted in bulk in C.

The fast path assumes the hub's frames as telemetry.events.readings_frame makes them with
orjson (no spaces, keys in this order): `{"type":"readings","device":"<id>","seq":<n>,"items":
[{"ts":<n>,"values":{...,"pub":<seconds>,...}}, ...]}`, alone or joined in
`{"type":"batch","frames":[...]}` (telemetry.consumers), where a `{"type":"dropped","devices":
{...}}` frame may come first; and values that are numbers (as bench.publisher sends). A message
with any other frame (snapshot, status) or another shape (the naive bridge's) is parsed whole. tests/test_tally.py fails if the hub's frames change
shape."""
import operator
import re

import orjson

from bench.stats import Histogram

FRAME_START = '{"type":"'
BATCH_START = '{"type":"batch","frames":['
DROPPED_FIRST = BATCH_START + '{"type":"dropped","devices":{'
READINGS_FRAME = re.compile(r'\{"type":"readings","device":"([^"]*)","seq":(\d+),"items":\[')
PUBLISHED = re.compile(r'"pub":([^,}]*)')


class Tally:
    """The counts of one client process, over all of its sockets."""

    def __init__(self):
        self.latency = Histogram()
        self.readings = 0
        self.frames = 0
        self.dropped = 0
        self.gaps = 0
        self.busiest_frames_per_second = 0
        self._second, self._frames_this_second = 0, 0

    def count_message(self, now):
        """One live message (a lone frame or a batch), for the messages-per-second figures."""
        if int(now) != self._second:
            self.busiest_frames_per_second = max(self.busiest_frames_per_second, self._frames_this_second)
            self._second, self._frames_this_second = int(now), 0
        self._frames_this_second += 1
        self.frames += 1

    def count_published(self, published, now):
        """Readings that carry their publish times (epoch seconds), arrived at `now`."""
        self.readings += self.latency.add_all(map((1000.0).__mul__, map(now.__sub__, published)))

    def as_dict(self):
        return {
            "readings": self.readings, "frames": self.frames, "dropped": self.dropped, "gaps": self.gaps,
            "busiest_frames_per_second": self.busiest_frames_per_second, "latency_bins": self.latency.bins,
        }


class SocketReader:
    """One socket's messages into the process's Tally: keeps the socket's last seq per device."""

    def __init__(self, tally):
        self.tally = tally
        self.seqs = {}

    def take(self, text, now):
        """Counts one message that arrived at `now`; returns how many snapshots it carried."""
        read = readings_frames(text)
        if read is None:
            return self._take_parsed(orjson.loads(text), now)
        dropped, frames = read
        self.tally.dropped += dropped
        devices, seqs = zip(*frames)
        self._count_seqs(devices, numbers(seqs))
        self.tally.count_published(numbers(PUBLISHED.findall(text)), now)
        return 0

    def _count_seqs(self, devices, seqs):
        """A gap is a frame whose seq is more than one past the device's previous frame's."""
        latest = dict(zip(devices, seqs))
        if len(latest) == len(devices):  # each device once: compare in C
            previous = map(self.seqs.get, devices, seqs)  # a device seen first counts as no gap
            self.tally.gaps += sum(map((1).__lt__, map(operator.sub, seqs, previous)))
            self.seqs.update(latest)
            return
        for device, seq in zip(devices, seqs):
            if device in self.seqs and seq > self.seqs[device] + 1:
                self.tally.gaps += 1
            self.seqs[device] = seq

    def _take_parsed(self, message, now):
        snapshots, devices, seqs, published = 0, [], [], []
        for frame in message["frames"] if message["type"] == "batch" else [message]:
            kind = frame["type"]
            if kind == "readings":
                seq = frame.get("seq")  # the naive bridge's frames have none
                if seq is not None:
                    devices.append(frame["device"])
                    seqs.append(seq)
                published.extend(item["values"]["pub"] for item in frame["items"] if "pub" in item["values"])
            elif kind == "dropped":
                self.tally.dropped += sum(frame["devices"].values())
            elif kind == "snapshot":
                self._count_seqs(devices, seqs)  # the frames before it, then the snapshot's seq
                devices, seqs = [], []
                self.seqs[frame["device"]] = frame["seq"]
                snapshots += 1
        self._count_seqs(devices, seqs)
        self.tally.count_published(published, now)
        return snapshots


def readings_frames(text):
    """For a message of readings frames in the hub's shape (see the module's docstring), the
    frames dropped that a leading dropped frame counts, and the (device, seq) texts of each
    readings frame; None for any other message."""
    others, dropped = 0, 0
    if text.startswith(BATCH_START):
        others = 1
        if text.startswith(DROPPED_FIRST):  # the consumer puts it first: {"dev": n, ...} has no other "}"
            end = text.index("}}", len(DROPPED_FIRST)) + 2
            dropped = sum(orjson.loads(text[len(BATCH_START):end])["devices"].values())
            others = 2
    frames = READINGS_FRAME.findall(text)
    return (dropped, frames) if frames and len(frames) == text.count(FRAME_START) - others else None


def numbers(texts):
    """JSON numbers' texts as numbers, parsed in one call to orjson rather than one by one."""
    return orjson.loads("[" + ",".join(texts) + "]")
