"""Bytes per stored value on SQLite, the id-keyed readings table (migration telemetry 0002) against
the keyed WITHOUT ROWID one (0003): each in a fresh database, `--values` values of 3 keys of
`--devices` devices arriving in time order as a hub stores them, then (page_count - pages before
the fill) * page_size / values. No bridge, no hub: only the table and its index.

    python -m bench.reading_bytes --values 1000000
"""
import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEYS = ("temp", "hum", "pub")
LAYOUTS = {"id-keyed (telemetry 0002)": "0002_rollups", "WITHOUT ROWID (telemetry 0003)": "0003_reading_layout"}


def database_at(migration, workdir):
    """A fresh SQLite database of the hub migrated to `migration` of telemetry."""
    env = {**os.environ, "HUB_DATA_DIR": str(workdir), "HUB_DEBUG": "true"}
    env.pop("HUB_DATABASE_URL", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0", "telemetry", migration], cwd=ROOT, env=env, check=True)
    return workdir / "telehub.sqlite3"


def pages(db):
    return db.execute("PRAGMA page_count").fetchone()[0]


def fill(path, values, devices):
    """Stores `values` values in time order, a transaction per 10,000; returns bytes per value."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    before = pages(db)
    ts = 1_764_000_000_000
    rows = []
    stored = 0
    while stored < values:
        ts += 1000
        for device in range(devices):
            for key in KEYS:
                rows.append((f"sensor-{device:05d}", key, ts, "n", (ts % 997) / 4, None))
        stored += devices * len(KEYS)
        if len(rows) >= 10_000 or stored >= values:
            with db:
                db.executemany("INSERT INTO telemetry_reading (device_id, key, ts, kind, num, text) VALUES (?, ?, ?, ?, ?, ?)", rows)
            rows = []
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    grown = (pages(db) - before) * page_size
    db.close()
    return grown / stored, stored


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=1_000_000)
    parser.add_argument("--devices", type=int, default=100)
    args = parser.parse_args()
    print(f"python -m bench.reading_bytes --values {args.values} --devices {args.devices}")
    print(f"load: {os.getloadavg()[0]:.2f}")
    for name, migration in LAYOUTS.items():
        with tempfile.TemporaryDirectory(prefix="telehub-bytes-") as workdir:
            path = database_at(migration, Path(workdir))
            started = time.monotonic()
            per_value, stored = fill(path, args.values, args.devices)
            print(f"{name}: {per_value:.1f} bytes per value ({stored:,} values, filled in {time.monotonic() - started:.1f} s)")


if __name__ == "__main__":
    main()
