"""daphne's memory while one signed-in dashboard floods it with large subscribe frames.

python -m bench.ws_flood --seconds 20 --devices 1000

Starts the stack (bench.stack: throwaway Redis, Mosquitto, SQLite, the bridge and daphne), then
one signed-in fleet socket sends subscribe frames of --devices device ids (most of them unknown,
as a hostile client's are) as fast as it can for --seconds, reading what it is sent. When daphne
closes it, it opens another and goes on, as a hostile client would; the last socket is given
up to 10 s more for daphne to close it. Meanwhile a quiet fleet
socket watches the fleet. Prints daphne's RSS before, at its peak during and 5 s after the flood,
its CPU seconds during the flood and the 5 s after it, the frames sent, the sockets closed (by code) and the frames the quiet socket
got, as JSON.
"""
import argparse
import json
import sys
import tempfile
import threading
import time
from collections import Counter

import orjson
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from bench.prepare import device_ids
from bench.stack import Stack

MIB = 2**20
CLOSE_WAIT_SECONDS = 10


def flood(stack, frame, seconds, closes):
    """Sends `frame` as fast as the socket takes it for `seconds`; a socket daphne closes is
    replaced. The last one is given CLOSE_WAIT_SECONDS more to be closed: daphne reads a flood
    faster than its consumer judges it, and on a slow machine the consumer may be seconds
    behind. Returns the frames sent."""
    sent = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        socket = connect(f"ws://127.0.0.1:{stack.port}/ws/fleet/", additional_headers={"Cookie": stack.cookie},
                         origin=stack.url, max_queue=None, open_timeout=30)
        try:
            while time.monotonic() < deadline:
                socket.send(frame)
                sent += 1
            wait_for_close(socket, CLOSE_WAIT_SECONDS)
        except ConnectionClosed as closed:
            closes[closed.rcvd.code if closed.rcvd else "no close frame"] += 1
        finally:
            socket.close()
    return sent


def wait_for_close(socket, seconds):
    """Reads what daphne sends until it closes the socket (ConnectionClosed) or `seconds` pass."""
    until = time.monotonic() + seconds
    while (left := until - time.monotonic()) > 0:
        try:
            socket.recv(timeout=left)
        except TimeoutError:
            return


def quiet_socket(stack, stop, counts):
    with connect(f"ws://127.0.0.1:{stack.port}/ws/fleet/", additional_headers={"Cookie": stack.cookie},
                 origin=stack.url, open_timeout=30) as socket:
        socket.send(orjson.dumps({"action": "subscribe", "devices": "*"}).decode())
        while not stop.is_set():
            try:
                message = orjson.loads(socket.recv(timeout=0.5))
            except TimeoutError:
                continue
            counts[message["type"]] += 1


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--devices", type=int, default=1000, help="device ids in each subscribe frame")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="telehub-ws-flood-") as workdir:
        stack = Stack(workdir, devices=10, log=lambda line: print(line, file=sys.stderr))
        try:
            stack.start()
            time.sleep(2)  # daphne settles after its first requests
            before = stack.meter.rss["daphne"]
            cpu_before = stack.meter.cpu_seconds()["daphne"]
            stack.meter.reset_peaks()
            stop, quiet = threading.Event(), Counter()
            listener = threading.Thread(target=quiet_socket, args=(stack, stop, quiet), daemon=True)
            listener.start()
            ids = device_ids(10) + [f"unknown-{number:08d}-{'x' * 40}" for number in range(args.devices - 10)]
            frame = orjson.dumps({"action": "subscribe", "devices": ids}).decode()
            closes = Counter()
            sent = flood(stack, frame, args.seconds, closes)
            peak = stack.meter.peak_rss["daphne"]
            cpu_after_flood = stack.meter.cpu_seconds()["daphne"]
            time.sleep(5)
            cpu_afterwards = stack.meter.cpu_seconds()["daphne"] - cpu_after_flood
            stop.set()
            listener.join()
            print(json.dumps({
                "flood_seconds": args.seconds, "frame_bytes": len(frame), "frames_sent": sent,
                "mib_sent": round(sent * len(frame) / MIB), "sockets_closed": dict(closes),
                "daphne_rss_mib": {"before": round(before / MIB), "peak": round(peak / MIB),
                                   "5_s_after": round(stack.meter.rss["daphne"] / MIB)},
                "daphne_cpu_seconds": {"flood": round(cpu_after_flood - cpu_before, 1), "5_s_after": round(cpu_afterwards, 1)},
                "quiet_socket_got": dict(quiet),
            }))
            print("command: python -m bench.ws_flood " + " ".join(sys.argv[1:]))
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
