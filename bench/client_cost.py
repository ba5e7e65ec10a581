"""The CPU a dashboard client process spends counting 100,000 readings, without a stack: fan-out
messages made as the hub makes them (telemetry.events.readings_frame, joined as
telemetry.consumers batches them), fed to bench.tally, on the fast path and parsed whole.

python -m bench.client_cost --frames 500 --rounds 5
Prints the CPU seconds per 100,000 readings of each path (best of the rounds) as JSON."""
import argparse
import json
import time
from types import SimpleNamespace

import orjson

from bench.prepare import device_ids
from bench.tally import SocketReader, Tally
from telemetry.events import readings_frame

READINGS = 100_000


def fanout_messages(frames_per_message, now):
    """One reading per frame (a device at 1 Hz), as many messages as make READINGS readings."""
    devices = device_ids(1_000)
    messages = []
    for start in range(0, READINGS, frames_per_message):
        texts = []
        for number in range(start, start + frames_per_message):
            values = {"temp": 21.37, "hum": number % 100, "pub": now - 0.05 + number * 1e-7}
            texts.append(readings_frame(devices[number % len(devices)], number // len(devices) + 1, [SimpleNamespace(ts=int(now * 1000), values=values)])[2])
        messages.append('{"type":"batch","frames":[' + ",".join(texts) + "]}")
    return messages


def cpu_seconds(count, messages, now):
    reader = SocketReader(Tally())
    started = time.process_time()
    for text in messages:
        count(reader, text, now)
    return time.process_time() - started, reader.tally.readings


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=500, help="readings frames per message")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    now = time.time()
    messages = fanout_messages(args.frames, now)
    paths = {
        "fast": lambda reader, text, now: reader.take(text, now),
        "parsed_whole": lambda reader, text, now: reader._take_parsed(orjson.loads(text), now),
    }
    figures = {"frames_per_message": args.frames, "message_kib": round(len(messages[0]) / 1024, 1)}
    for name, count in paths.items():
        rounds = [cpu_seconds(count, messages, now) for _ in range(args.rounds)]
        assert all(readings == READINGS for _, readings in rounds), rounds
        figures[f"{name}_cpu_ms_per_100k_readings"] = round(1000 * min(seconds for seconds, _ in rounds), 1)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
