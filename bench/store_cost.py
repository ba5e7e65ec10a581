"""How fast the bridge's storing runs on its own, and how that changes as the database grows:
telemetry.storage.store_samples fed flushes as the bridge makes them (one three-value reading
from each of --flush devices in turn), on a database of its own.

python -m bench.store_cost --rounds 6 --seconds 5 --flush 50
python -m bench.store_cost --database-url postgres://user@host:5432/name   # an empty database

Prints one JSON line per round: readings stored a second, the process's CPU (storing on one
thread; a database server's own CPU is not in it) and, on SQLite, the database's size."""
import argparse
import json
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import django

from bench.prepare import device_ids

DEVICES = 1000


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each round")
    parser.add_argument("--flush", type=int, default=50, help="readings in each flush")
    parser.add_argument("--database-url", help="default: SQLite in a temporary directory")
    args = parser.parse_args()
    workdir = tempfile.TemporaryDirectory(prefix="telehub-store-cost-")
    sqlite_file = None if args.database_url else Path(workdir.name) / "store.sqlite3"
    os.environ["HUB_DATABASE_URL"] = args.database_url or f"sqlite:///{sqlite_file}"
    os.environ.setdefault("HUB_SECRET_KEY", secrets.token_urlsafe(50))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
    django.setup()

    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.utils import timezone

    from devices.models import Device
    from telemetry.storage import store_samples

    call_command("migrate", verbosity=0)
    owner, _ = get_user_model().objects.get_or_create(username="store-cost")
    devices = device_ids(DEVICES)
    Device.objects.bulk_create([Device(id=device_id, owner=owner) for device_id in devices], ignore_conflicts=True)
    print(f"storing flushes of {args.flush} readings from {DEVICES} devices, {args.rounds} rounds of {args.seconds} s",
          file=sys.stderr)

    ts = int(time.time() * 1000)
    stored = 0
    for round_number in range(1, args.rounds + 1):
        started, cpu_started, count = time.monotonic(), time.process_time(), 0
        while time.monotonic() - started < args.seconds:
            flush = {}
            for _ in range(args.flush):
                values = {"temp": 21.5, "hum": stored % 100, "pub": time.time()}
                flush.setdefault(devices[stored % DEVICES], []).append(SimpleNamespace(ts=ts + stored, values=values))
                stored += 1
                count += 1
            store_samples(flush, timezone.now())
        elapsed = time.monotonic() - started
        figures = {
            "round": round_number,
            "readings_per_s": round(count / elapsed),
            "cpu_percent": round(100 * (time.process_time() - cpu_started) / elapsed),
            "readings_stored": stored,
        }
        if sqlite_file is not None:
            figures["database_mib"] = round(sqlite_file.stat().st_size / 2**20, 1)
        print(json.dumps(figures), flush=True)
    print("command: python -m bench.store_cost " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
