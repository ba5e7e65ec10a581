"""How fast the rollup job runs on its own: one pass of the bridge's job (telemetry.upkeep),
MARKS_PER_PASS marked minutes per transaction, over the minutes marked by flushes of three-value
readings from 1,000 devices (every device in every flush, 20 flushes a minute), on a database
of its own.

python -m bench.rollup_cost                       # SQLite in a temporary directory
python -m bench.rollup_cost --database postgres   # a throwaway PostgreSQL cluster (tests.servers)

Prints one JSON line: the marks (one per device, key and minute), the seconds the job took to
roll them all up, minutes rolled up a second, and the rows it left."""
import argparse
import asyncio
import json
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import django

from bench.store_cost import DEVICES, prepare_database

FLUSHES_PER_MINUTE = 20


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--minutes", type=int, default=3, help="minutes of readings, the last ending a minute before now")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="telehub-rollup-cost-") as workdir:
        server = None
        if args.database == "postgres":
            from tests.servers import PostgresServer

            server = PostgresServer(Path(workdir))
            server.start()
        try:
            os.environ["HUB_DATABASE_URL"] = server.url if server else f"sqlite:///{Path(workdir) / 'rollups.sqlite3'}"
            os.environ.setdefault("HUB_SECRET_KEY", secrets.token_urlsafe(50))
            os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
            django.setup()
            print(json.dumps(measure(prepare_database(), args.minutes)), flush=True)
        finally:
            if server:
                server.stop()
    print("command: python -m bench.rollup_cost " + " ".join(sys.argv[1:]))


def measure(devices, minutes):
    from django.utils import timezone

    from telemetry import rollups
    from telemetry.models import HourRollup, MinuteRollup, RollupMark
    from telemetry.storage import store_samples
    from telemetry.upkeep import Upkeep

    now = int(time.time() * 1000)
    # A minute apart from now: the job leaves a minute alone until SETTLE_MS after its end.
    first_minute = now - now % rollups.MINUTE_MS - (minutes + 1) * rollups.MINUTE_MS
    step = rollups.MINUTE_MS // FLUSHES_PER_MINUTE
    print(f"storing {minutes} minutes of readings from {DEVICES} devices, {FLUSHES_PER_MINUTE} flushes a minute",
          file=sys.stderr)
    for flush in range(minutes * FLUSHES_PER_MINUTE):
        ts = first_minute + flush * step
        store_samples({device: [SimpleNamespace(ts=ts, values={"temp": 21.5, "hum": flush % 100, "pub": time.time()})]
                       for device in devices}, timezone.now())
    marks = RollupMark.objects.count()
    print(f"rolling up {marks:,} marked minutes, {rollups.MARKS_PER_PASS} a pass", file=sys.stderr)
    started = time.monotonic()
    asyncio.run(Upkeep().roll_up_pass())  # as the bridge's job runs, in its thread and on its connection
    seconds = time.monotonic() - started
    return {
        "marks": marks, "seconds": round(seconds, 2), "minutes_per_s": round(marks / seconds),
        "minute_rows": MinuteRollup.objects.count(), "hour_rows": HourRollup.objects.count(),
        "marks_left": RollupMark.objects.count(),
    }


if __name__ == "__main__":
    main()
