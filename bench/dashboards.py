"""Dashboard clients over real websockets: each records, for every reading it receives, the
time from the device's publish to its arrival (counted by bench.tally).

python -m bench.dashboards --url ws://127.0.0.1:8000 --cookie sessionid=... --sockets 10 \\
    --watch device --devices 100 --seconds 20
--watch device: socket i opens ws/devices/<device first + i mod N>/; fleet: ws/fleet/ subscribed to "*";
idle: ws/fleet/ subscribed to nothing; naive: the naive bridge's ws/naive/<device first + i mod N>/.

A socket whose connect fails tries again with the dashboards' jittered backoff
(telemetry/static/telemetry/live.js: 0.5 s doubling up to 30 s, waiting between half and all
of it) until --connect-within seconds have passed; then it counts as failed. Prints one JSON
line once every socket is open or failed ({"event": "open", ...}), then runs for --seconds, or
until SIGTERM, and prints its counts and latency histogram as JSON."""
import argparse
import asyncio
import itertools
import json
import random
import signal
import time

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake

from bench.prepare import device_ids
from bench.tally import SocketReader, Tally

RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 30.0
# How long one attempt may take: daphne itself gives up on a handshake after 5 s.
OPEN_TIMEOUT_S = 20


class Dashboards:
    """The sockets of one client process, and what they count together."""

    def __init__(self, args):
        self.args = args
        self.tally = Tally()
        self.refused = 0  # connect attempts that failed and were tried again or given up
        self.failed = 0  # sockets never opened before the deadline
        self.closed = 0  # sockets the server closed before the run ended
        self.errors = set()
        self.sockets = set()
        self.settled = asyncio.Semaphore(0)  # released once per socket: open (snapshots in), or failed
        self.started = time.monotonic()
        self.last_open = None
        self.stopping = False

    def path(self, number):
        if self.args.watch in ("device", "naive"):
            section = "devices" if self.args.watch == "device" else "naive"
            return f"/ws/{section}/{device_ids(self.args.devices)[(self.args.first + number) % self.args.devices]}/"
        return "/ws/fleet/"

    async def open(self, number):
        """A socket open, after as many attempts as it takes until the deadline; None if it never opened."""
        deadline = self.started + self.args.connect_within
        for attempt in itertools.count():
            try:
                return await connect(
                    self.args.url + self.path(number), additional_headers={"Cookie": self.args.cookie},
                    origin=self.args.url.replace("ws", "http", 1), max_size=None, open_timeout=OPEN_TIMEOUT_S,
                )
            except (OSError, TimeoutError, InvalidHandshake) as error:
                self.refused += 1
                self.errors.add(repr(error)[:200])
            ceiling = min(RECONNECT_MAX_S, RECONNECT_MIN_S * 2 ** attempt)
            pause = random.uniform(ceiling / 2, ceiling)
            if time.monotonic() + pause > deadline:
                return None
            await asyncio.sleep(pause)

    async def watch(self, number):
        socket = await self.open(number)
        if socket is None:
            self.failed += 1
            self.settled.release()
            return
        self.sockets.add(socket)
        # Open once the snapshots are in, so that the measurement covers live frames only.
        awaiting_snapshots = {"fleet": self.args.devices, "device": 1, "idle": 0, "naive": 0}[self.args.watch]
        try:
            if self.args.watch == "fleet":
                await socket.send('{"action": "subscribe", "devices": "*"}')
            if not awaiting_snapshots:
                self.opened()
            reader = SocketReader(self.tally)
            async for text in socket:
                now = time.time()
                if awaiting_snapshots <= 0:  # live messages only
                    self.tally.count_message(now)
                snapshots = reader.take(text, now)
                if snapshots and awaiting_snapshots > 0:
                    awaiting_snapshots -= snapshots
                    if awaiting_snapshots <= 0:
                        self.opened()
        except Exception as error:  # a socket that breaks is counted, and must not stall the others
            self.errors.add(repr(error)[:200])
        if not self.stopping:
            self.closed += 1
            self.errors.add(f"closed by the server: {socket.close_code} {socket.close_reason}"[:200])
            if awaiting_snapshots > 0:
                self.settled.release()

    def opened(self):
        self.last_open = time.monotonic()
        self.settled.release()

    def open_event(self):
        opened = self.args.sockets - self.failed
        return {
            "event": "open", "sockets": self.args.sockets, "opened": opened, "failed_sockets": self.failed,
            "connect_attempts_refused": self.refused,
            "open_seconds": round(self.last_open - self.started, 2) if self.last_open else None,
        }

    def as_dict(self):
        return {
            **self.open_event(), "event": "done", "closed_sockets": self.closed, "errors": sorted(self.errors),
            **self.tally.as_dict(),
        }

    async def stop(self):
        self.stopping = True
        await asyncio.gather(*(socket.close() for socket in self.sockets), return_exceptions=True)


async def run(args):
    dashboards = Dashboards(args)
    tasks = []
    for number in range(args.sockets):
        # Dashboards arrive one after another, not all in the same instant.
        tasks.append(asyncio.create_task(dashboards.watch(number)))
        await asyncio.sleep(args.ramp / args.sockets)
    for _ in range(args.sockets):
        await dashboards.settled.acquire()
    print(json.dumps(dashboards.open_event()), flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), args.seconds)
    except TimeoutError:
        pass
    await dashboards.stop()
    await asyncio.gather(*tasks, return_exceptions=True)
    return dashboards.as_dict()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--cookie", required=True)
    parser.add_argument("--sockets", type=int, required=True)
    parser.add_argument("--watch", choices=["device", "fleet", "idle", "naive"], required=True)
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--first", type=int, default=0, help="socket i watches device first + i (mod --devices)")
    parser.add_argument("--seconds", type=float, required=True, help="how long to listen once every socket is open")
    parser.add_argument("--ramp", type=float, default=2.0, help="seconds over which the sockets first connect")
    parser.add_argument("--connect-within", type=float, default=60.0, help="seconds to keep retrying a failed connect")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
