"""How fast the bridge's storing runs on its own, and how that changes as the database grows:
telemetry.storage.store_samples fed flushes as the bridge makes them (three-value readings
from 1,000 devices in turn), on a database of its own.

python -m bench.store_cost --rounds 6 --seconds 5 --flush 50
python -m bench.store_cost --rate 10000 --rounds 3 --seconds 10    # offered at a fixed rate
python -m bench.store_cost --database-url postgres://user@host:5432/name   # an empty database

Flat out, each flush holds --flush readings. With --rate, readings fall due at that rate and
each flush stores those due since the last one, as the bridge does when busy (flushes start at
most once every --window ms, its HUB_BATCH_WINDOW_MS).

Prints one JSON line per round: readings stored a second, the time each flush took (p50, p99,
max), readings per flush, the process's CPU (storing on one thread; a database server's own
CPU is not in it) and, on SQLite, the database's size."""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace


from bench.in_process import setup_django
from bench.prepare import device_ids
from bench.sqlite_files import sqlite_bytes
from bench.stats import Histogram

DEVICES = 1000


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each round")
    parser.add_argument("--flush", type=int, default=50, help="readings in each flush, flat out")
    parser.add_argument("--rate", type=float, help="readings offered a second, instead of flat out")
    parser.add_argument("--window", type=float, default=2.0, help="ms between flushes at --rate")
    parser.add_argument("--database-url", help="default: SQLite in a temporary directory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="telehub-store-cost-") as workdir:
        sqlite_file = None if args.database_url else Path(workdir) / "store.sqlite3"
        setup_django(args.database_url or f"sqlite:///{sqlite_file}")
        feed = Feed(prepare_database())
        pace = f"{args.rate:,.0f} readings/s offered" if args.rate else f"flushes of {args.flush} readings"
        print(f"storing {pace} from {DEVICES} devices, {args.rounds} rounds of {args.seconds} s", file=sys.stderr)
        for round_number in range(1, args.rounds + 1):
            if args.rate:
                figures = feed.at_rate(args.rate, args.seconds, args.window / 1000)
            else:
                figures = feed.flat_out(args.flush, args.seconds)
            figures = {"round": round_number, **figures, "readings_stored": feed.stored}
            if sqlite_file is not None:
                figures["database_mib"] = round(sqlite_bytes(sqlite_file) / 2**20, 1)
            print(json.dumps(figures), flush=True)
    print("command: python -m bench.store_cost " + " ".join(sys.argv[1:]))


def prepare_database():
    """Migrates the database and registers the devices; returns their ids."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from devices.models import Device

    call_command("migrate", verbosity=0)
    owner, _ = get_user_model().objects.get_or_create(username="store-cost")
    devices = device_ids(DEVICES)
    Device.objects.bulk_create([Device(id=device_id, owner=owner) for device_id in devices], ignore_conflicts=True)
    return devices


class Feed:
    """Readings for store_samples, each device's timestamps rising from now on."""

    def __init__(self, devices):
        self.devices = devices
        self.first_ts = int(time.time() * 1000)
        self.stored = 0

    def flat_out(self, flush, seconds):
        return self._round(seconds, lambda elapsed: flush, pause=0)

    def at_rate(self, rate, seconds, window):
        offered_before = self.stored
        return self._round(seconds, lambda elapsed: offered_before + int(elapsed * rate) - self.stored, pause=window)

    def _round(self, seconds, due, pause):
        from django.utils import timezone

        from telemetry.storage import store_samples

        flush_ms, flushes = Histogram(), 0
        started, cpu_started, stored_before = time.monotonic(), time.process_time(), self.stored
        while (elapsed := time.monotonic() - started) < seconds:
            readings = due(elapsed)
            if readings > 0:
                batch = self._next_readings(readings)
                flush_started = time.monotonic()
                store_samples(batch, timezone.now())
                flush_ms.add((time.monotonic() - flush_started) * 1000)
                flushes += 1
            if pause:
                # As the bridge: the next flush a window after this one began, not after it ended.
                time.sleep(max(0.0, pause - (time.monotonic() - started - elapsed)))
        elapsed = time.monotonic() - started
        stored = self.stored - stored_before
        timings = flush_ms.summary()
        return {
            "readings_per_s": round(stored / elapsed),
            "flush_p50_ms": timings["p50_ms"],
            "flush_p99_ms": timings["p99_ms"],
            "flush_max_ms": timings["max_ms"],
            "readings_per_flush": round(stored / flushes) if flushes else 0,
            "cpu_percent": round(100 * (time.process_time() - cpu_started) / elapsed),
        }

    def _next_readings(self, count):
        batch = {}
        for number in range(self.stored, self.stored + count):
            values = {"temp": 21.5, "hum": number % 100, "pub": time.time()}
            device = self.devices[number % DEVICES]
            batch.setdefault(device, []).append(SimpleNamespace(ts=self.first_ts + number, values=values))
        self.stored += count
        return batch


if __name__ == "__main__":
    main()
