"""How fast the rollup job runs on its own: one pass of the bridge's job (telemetry.upkeep),
MARKS_PER_PASS marked minutes per transaction, over the minutes marked by flushes of three-value
readings from 1,000 devices (every device in every flush, 20 flushes a minute), on a database
of its own.

python -m bench.rollup_cost                       # SQLite in a temporary directory
python -m bench.rollup_cost --database postgres   # a throwaway PostgreSQL cluster (tests.servers)
python -m bench.rollup_cost --database postgres --fill 10000000   # after 10 million values over 90 days

With --fill, bench.fill first writes that much history of other keys (with its rollups) and
the database is settled, as bench.growth does: the job on a database that has grown.

Prints one JSON line: the marks (one per device, key and minute), the seconds the job took to
roll them all up, minutes rolled up a second, and the rows it left."""
import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from bench.fill import fill, settle_filled
from bench.in_process import setup_django
from bench.store_cost import DEVICES, prepare_database

FLUSHES_PER_MINUTE = 20
KEYS = ("temp", "hum", "pub")
FILL_DAYS = 90


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--minutes", type=int, default=3, help="minutes of readings, the last ending a minute before now")
    parser.add_argument("--fill", type=int, default=0, help=f"values of history (bench.fill) over {FILL_DAYS} days first")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="telehub-rollup-cost-") as workdir:
        server = None
        if args.database == "postgres":
            from tests.servers import PostgresServer

            server = PostgresServer(Path(workdir))
            server.start()
        try:
            sqlite_path = Path(workdir) / "rollups.sqlite3"
            setup_django(server.url if server else f"sqlite:///{sqlite_path}")
            devices = prepare_database()
            if args.fill:
                print(json.dumps(fill(devices, args.fill, FILL_DAYS, int(time.time() * 1000))), file=sys.stderr)
                print(f"settled in {settle_filled(server and server.url, sqlite_path)} s", file=sys.stderr)
            print(json.dumps({"filled": args.fill, **measure(devices, args.minutes)}), flush=True)
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
        values = dict(zip(KEYS, (21.5, flush % 100, time.time())))
        store_samples({device: [SimpleNamespace(ts=ts, values=values)] for device in devices}, timezone.now())
    marks = RollupMark.objects.count()
    print(f"rolling up {marks:,} marked minutes, {rollups.MARKS_PER_PASS} a pass", file=sys.stderr)
    started = time.monotonic()
    asyncio.run(Upkeep().roll_up_pass())  # as the bridge's job runs, in its thread and on its connection
    seconds = time.monotonic() - started
    return {
        "marks": marks, "seconds": round(seconds, 2), "minutes_per_s": round(marks / seconds),
        # The rows of the keys stored here, not of the filled ones (bench.fill.KEYS).
        "minute_rows": MinuteRollup.objects.filter(key__in=KEYS).count(),
        "hour_rows": HourRollup.objects.filter(key__in=KEYS).count(),
        "marks_left": RollupMark.objects.count(),
    }


if __name__ == "__main__":
    main()
