"""Dashboard clients over real websockets: each records, for every reading it receives, the
time from the device's publish to its arrival.

python -m bench.dashboards --url ws://127.0.0.1:8000 --cookie sessionid=... --sockets 10 \\
    --watch device --devices 100 --seconds 20
--watch device: socket i opens ws/devices/<device first + i mod N>/; fleet: ws/fleet/ subscribed to "*";
idle: ws/fleet/ subscribed to nothing; naive: the naive bridge's ws/naive/<device first + i mod N>/.
Runs for --seconds, or until SIGTERM. Prints counts and a latency histogram as JSON."""
import argparse
import asyncio
import json
import signal
import time

import orjson
from websockets.asyncio.client import connect

from bench.prepare import device_ids
from bench.stats import Histogram


class Tally:
    def __init__(self):
        self.latency = Histogram()
        self.readings = 0
        self.frames = 0
        self.dropped = 0
        self.gaps = 0
        self.busiest_frames_per_second = 0
        self.failed = 0
        self.errors = set()

    def as_dict(self):
        return {
            "failed_sockets": self.failed, "errors": sorted(self.errors), "readings": self.readings, "frames": self.frames, "dropped": self.dropped, "gaps": self.gaps,
            "busiest_frames_per_second": self.busiest_frames_per_second, "latency_bins": self.latency.bins,
        }


async def watch(args, number, tally, opened, stop):
    try:
        await stream(args, number, tally, opened, stop)
    except Exception as error:  # a socket that fails is counted, and must not stall the others
        tally.failed += 1
        tally.errors.add(repr(error)[:200])
        opened.release()


async def stream(args, number, tally, opened, stop):
    origin = args.url.replace("ws", "http", 1)
    if args.watch in ("device", "naive"):
        section = "devices" if args.watch == "device" else "naive"
        path = f"/ws/{section}/{device_ids(args.devices)[(args.first + number) % args.devices]}/"
    else:
        path = "/ws/fleet/"
    async with connect(
        args.url + path, additional_headers={"Cookie": args.cookie}, origin=origin, max_size=None, open_timeout=60
    ) as socket:
        if args.watch == "fleet":
            await socket.send('{"action": "subscribe", "devices": "*"}')
        # Open once the snapshots are in, so that the measurement covers live frames only.
        awaiting_snapshots = {"fleet": args.devices, "device": 1, "idle": 0, "naive": 0}[args.watch]
        if not awaiting_snapshots:
            opened.release()
        seqs = {}
        second, frames_this_second = int(time.time()), 0
        while not stop.is_set():
            try:
                text = await asyncio.wait_for(socket.recv(), 0.5)
            except TimeoutError:
                continue
            now = time.time()
            frame = orjson.loads(text)
            if awaiting_snapshots <= 0:  # live messages only
                if int(now) != second:
                    tally.busiest_frames_per_second = max(tally.busiest_frames_per_second, frames_this_second)
                    second, frames_this_second = int(now), 0
                frames_this_second += 1
                tally.frames += 1
            for item in frame["frames"] if frame["type"] == "batch" else [frame]:
                kind = item["type"]
                if kind == "readings":
                    device, seq = item["device"], item.get("seq")  # the naive bridge's have no seq
                    if seq is not None:
                        if device in seqs and seq > seqs[device] + 1:
                            tally.gaps += 1
                        seqs[device] = seq
                    for reading in item["items"]:
                        published = reading["values"].get("pub")
                        if published is not None:
                            tally.readings += 1
                            tally.latency.add((now - published) * 1000)
                elif kind == "dropped":
                    tally.dropped += sum(item["devices"].values())
                elif kind == "snapshot":
                    seqs[item["device"]] = item["seq"]
                    awaiting_snapshots -= 1
                    if awaiting_snapshots == 0:
                        opened.release()


async def run(args):
    tally = Tally()
    stop = asyncio.Event()
    opened = asyncio.Semaphore(0)
    tasks = []
    for number in range(args.sockets):
        # Dashboards arrive one after another, not all in the same instant.
        tasks.append(asyncio.create_task(watch(args, number, tally, opened, stop)))
        await asyncio.sleep(args.ramp / args.sockets)
    for _ in range(args.sockets):
        await opened.acquire()
    print(json.dumps({"event": "open", "sockets": args.sockets}), flush=True)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), args.seconds)
    except TimeoutError:
        stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return tally.as_dict()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--cookie", required=True)
    parser.add_argument("--sockets", type=int, required=True)
    parser.add_argument("--watch", choices=["device", "fleet", "idle", "naive"], required=True)
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--first", type=int, default=0, help="socket i watches device first + i (mod --devices)")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--ramp", type=float, default=2.0, help="seconds over which the sockets connect")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
