"""telemetry.storage.store_samples: what one flush of the bridge writes (docs/storage.md)."""
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from math import ceil

import pytest
from django.db import connection
from django.db.models.signals import pre_delete
from django.test.utils import CaptureQueriesContext

from bridge.protocol import Sample
from devices.models import Device
from telemetry import rollups
from telemetry.bulk import SQLITE_ROWS_PER_STATEMENT
from telemetry.models import LatestValue, Reading
from telemetry.storage import store_samples

pytestmark = pytest.mark.postgres

T0 = 1_764_000_000_000  # epoch milliseconds
RECEIVED = datetime(2025, 11, 24, 16, 0, tzinfo=dt_timezone.utc)


@pytest.fixture
def devices(make_user, make_device):
    owner = make_user("owner")
    return make_device("d1", owner), make_device("d2", owner)


def stored(device_id):
    """(key, ts, value) of each stored reading of a device, in key and time order."""
    return sorted((row.key, row.ts, row.value) for row in Reading.objects.filter(device_id=device_id))


def latest(device_id):
    """{key: (ts, value)} of a device's latest values."""
    return {row.key: (row.ts, row.value) for row in LatestValue.objects.filter(device_id=device_id)}


def device(device_id):
    return Device.objects.get(pk=device_id)


# What is stored.


def test_a_flush_stores_every_value_of_every_device(devices):
    seqs = store_samples(
        {
            "d1": [Sample(T0, {"temp": 21.5, "hum": 40}), Sample(T0 + 1000, {"temp": 22})],
            "d2": [Sample(T0, {"door": True})],
        },
        RECEIVED,
    )
    assert seqs == {"d1": 1, "d2": 1}
    assert stored("d1") == [("hum", T0, 40.0), ("temp", T0, 21.5), ("temp", T0 + 1000, 22.0)]
    assert stored("d2") == [("door", T0, True)]


@pytest.mark.parametrize("value, kind, num, text", [
    (21.5, "n", 21.5, None),
    (7, "n", 7.0, None),
    (-0.25, "n", -0.25, None),
    (True, "b", 1.0, None),
    (False, "b", 0.0, None),
    ("open", "s", None, "open"),
    ("", "s", None, ""),
])
def test_each_value_is_stored_in_the_columns_of_its_kind(devices, value, kind, num, text):
    store_samples({"d1": [Sample(T0, {"v": value})]}, RECEIVED)
    row = Reading.objects.get(device_id="d1", key="v")
    assert (row.kind, row.num, row.text) == (kind, num, text)
    assert row.value == value and type(row.value) is type(num if kind == "n" else value)
    latest_row = LatestValue.objects.get(device_id="d1", key="v")
    assert (latest_row.kind, latest_row.num, latest_row.text) == (kind, num, text)


def test_samples_of_unknown_devices_are_not_stored(devices):
    seqs = store_samples({"ghost": [Sample(T0, {"temp": 1})], "d1": [Sample(T0, {"temp": 2})]}, RECEIVED)
    assert seqs == {"d1": 1}
    assert stored("d1") == [("temp", T0, 2.0)]
    assert not Reading.objects.filter(device_id="ghost").exists()
    assert not Device.objects.filter(pk="ghost").exists()


def test_a_flush_of_unknown_devices_only_stores_nothing(devices):
    assert store_samples({"ghost": [Sample(T0, {"temp": 1})]}, RECEIVED) == {}
    assert not Reading.objects.exists() and not LatestValue.objects.exists()


# seq and last_seen.


def test_seq_rises_by_one_per_flush_of_a_device_whatever_the_flush_holds(devices):
    many = [Sample(T0 + i, {"temp": i, "hum": i}) for i in range(10)]
    results = [
        store_samples({"d1": many}, RECEIVED),
        store_samples({"d1": [Sample(T0 + 100, {"temp": 1})], "d2": many}, RECEIVED),
        store_samples({"d1": [Sample(T0 + 200, {"temp": 2})]}, RECEIVED),
    ]
    assert results == [{"d1": 1}, {"d1": 2, "d2": 1}, {"d1": 3}]
    assert (device("d1").seq, device("d2").seq) == (3, 1)


def test_last_seen_is_the_receive_time_of_the_devices_in_the_flush(devices):
    store_samples({"d1": [Sample(T0, {"temp": 1})]}, RECEIVED)
    assert (device("d1").last_seen, device("d2").last_seen) == (RECEIVED, None)
    later = RECEIVED + timedelta(seconds=5)
    store_samples({"d1": [Sample(T0 - 60_000, {"temp": 0})]}, later)  # an old reading, received now
    assert device("d1").last_seen == later


# Idempotence.


def test_a_redelivered_flush_is_stored_once(devices):
    batch = {"d1": [Sample(T0, {"temp": 21.5, "door": False}), Sample(T0 + 1, {"temp": 21.6})]}
    store_samples(batch, RECEIVED)
    store_samples(batch, RECEIVED)
    assert stored("d1") == [("door", T0, False), ("temp", T0, 21.5), ("temp", T0 + 1, 21.6)]
    assert latest("d1") == {"door": (T0, False), "temp": (T0 + 1, 21.6)}


def test_a_reading_already_stored_keeps_its_first_value(devices):
    store_samples({"d1": [Sample(T0, {"temp": 1})]}, RECEIVED)
    store_samples({"d1": [Sample(T0, {"temp": 2}), Sample(T0 + 1, {"temp": 3})]}, RECEIVED)
    assert stored("d1") == [("temp", T0, 1.0), ("temp", T0 + 1, 3.0)]


def test_a_reading_sent_twice_in_one_flush_is_stored_once(devices):
    store_samples({"d1": [Sample(T0, {"temp": 1}), Sample(T0, {"temp": 1})]}, RECEIVED)
    assert stored("d1") == [("temp", T0, 1.0)]


# Latest values.


@pytest.mark.parametrize("flushes, expected", [
    ([[(T0, {"temp": 1})], [(T0 + 1000, {"temp": 2})]], {"temp": (T0 + 1000, 2.0)}),
    ([[(T0, {"temp": 1})], [(T0 - 1000, {"temp": 0})]], {"temp": (T0, 1.0)}),
    ([[(T0 + 1000, {"temp": 2}), (T0, {"temp": 1})]], {"temp": (T0 + 1000, 2.0)}),
    ([[(T0, {"temp": 1, "hum": 40})], [(T0 + 1000, {"temp": 2})]], {"temp": (T0 + 1000, 2.0), "hum": (T0, 40.0)}),
    ([[(T0, {"state": 1.5})], [(T0 + 1000, {"state": "idle"})]], {"state": (T0 + 1000, "idle")}),
    ([[(T0, {"state": "idle"})], [(T0 + 1000, {"state": True})]], {"state": (T0 + 1000, True)}),
], ids=["newer-replaces", "older-does-not", "newest-within-a-flush", "keys-apart", "number-to-string", "string-to-bool"])
def test_the_latest_value_is_the_reading_with_the_newest_ts(devices, flushes, expected):
    for flush in flushes:
        store_samples({"d1": [Sample(ts, values) for ts, values in flush]}, RECEIVED)
    assert latest("d1") == expected


def test_an_older_reading_is_kept_in_history_without_becoming_the_latest(devices):
    store_samples({"d1": [Sample(T0, {"temp": 1})]}, RECEIVED)
    store_samples({"d1": [Sample(T0 - 1000, {"temp": 0})]}, RECEIVED)
    assert stored("d1") == [("temp", T0 - 1000, 0.0), ("temp", T0, 1.0)]
    row = LatestValue.objects.get(device_id="d1", key="temp")
    assert (row.ts, row.kind, row.num, row.text) == (T0, "n", 1.0, None)


@pytest.mark.parametrize("flushes", [
    [[(T0, {"temp": 1})], [(T0, {"temp": 2})]],
    [[(T0, {"temp": 1}), (T0, {"temp": 2})]],
], ids=["across-flushes", "within-a-flush"])
def test_a_reading_with_the_same_ts_does_not_replace_the_latest_value(devices, flushes):
    for flush in flushes:
        store_samples({"d1": [Sample(ts, values) for ts, values in flush]}, RECEIVED)
    assert stored("d1") == [("temp", T0, 1.0)]
    assert latest("d1") == {"temp": (T0, 1.0)}


# One transaction, a statement per table (and per thousand readings on SQLite).


def test_a_flush_that_fails_part_way_stores_nothing(devices, monkeypatch):
    def fail(marks):
        raise RuntimeError("the database went away")

    # After the readings and latest values are written (on PostgreSQL, after the one statement).
    monkeypatch.setattr(rollups, "remember_marks", fail)
    with pytest.raises(RuntimeError):
        store_samples({"d1": [Sample(T0, {"temp": 1})], "d2": [Sample(T0, {"temp": 2})]}, RECEIVED)
    assert not Reading.objects.exists()
    assert [(d.seq, d.last_seen) for d in Device.objects.all()] == [(0, None), (0, None)]


def statements_for(samples_by_device):
    """The statements a flush runs; on SQLite as SQLite sees them, for the bulk inserts go past
    Django's cursor (telemetry.bulk)."""
    if connection.vendor == "postgresql":
        with CaptureQueriesContext(connection) as queries:
            store_samples(samples_by_device, RECEIVED)
        return len(queries)
    statements = []
    connection.ensure_connection()
    connection.connection.set_trace_callback(statements.append)
    try:
        store_samples(samples_by_device, RECEIVED)
    finally:
        connection.connection.set_trace_callback(None)
    return len([sql for sql in statements if not sql.startswith(("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE"))])


def test_a_flush_takes_a_statement_per_table_and_per_thousand_readings(devices):
    small = statements_for({"d1": [Sample(T0, {"temp": 1})]})
    # In the next minute: the first flush marked T0's minute for the rollup job, the second need not again.
    large = statements_for({
        device_id: [Sample(T0 + 60_000 + i, {"temp": i, "hum": i, "on": True, "mode": "auto"}) for i in range(200)]
        for device_id in ("d1", "d2")
    })
    # Count the devices' frames, insert readings, upsert latest values, mark minutes: on
    # PostgreSQL in one statement; on SQLite one per table, and one more for each further
    # SQLITE_ROWS_PER_STATEMENT readings.
    readings = 2 * 200 * 4
    assert small >= (1 if connection.vendor == "postgresql" else 4)
    assert large == small + (0 if connection.vendor == "postgresql" else ceil(readings / SQLITE_ROWS_PER_STATEMENT) - 1)
    assert Reading.objects.count() == 1 + readings



def test_deleting_a_device_takes_its_readings_and_latest_values(devices):
    d1, d2 = devices
    store_samples({"d1": [Sample(T0, {"temp": 1.0})], "d2": [Sample(T0, {"temp": 2.0})]}, RECEIVED)
    d1.delete()
    assert stored("d1") == [] and latest("d1") == {}
    assert stored("d2") == [("temp", T0, 2.0)] and latest("d2") == {"temp": (T0, 2.0)}


def test_a_flush_during_a_device_deletion_waits_for_it_and_stores_none_of_its_readings(devices):
    """No constraint keeps readings with their device on PostgreSQL: the deletion locks the device
    first (telemetry.deletion), so a flush cannot slip readings in between the deletion of its
    readings and that of the device."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite's one writer keeps the flush out of the deletion's transaction")
    d1, _ = devices
    locked, go = threading.Event(), threading.Event()

    def hold_the_deletion(sender, instance, **kwargs):  # after the lock, before anything is deleted
        locked.set()
        go.wait(30)

    def flush():
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                flush_pid.append(cursor.fetchone()[0])
            return store_samples({"d1": [Sample(T0, {"temp": 1.0})], "d2": [Sample(T0, {"temp": 2.0})]}, RECEIVED)
        finally:
            connection.close()

    def delete():
        try:
            d1.delete()
        finally:
            connection.close()

    flush_pid = []
    pre_delete.connect(hold_the_deletion, sender=Device)
    try:
        with ThreadPoolExecutor(2) as pool:
            deleting = pool.submit(delete)
            assert locked.wait(10)
            flushing = pool.submit(flush)
            try:
                assert wait_for_lock_wait(flush_pid), "the flush did not wait for the deletion"
            finally:
                go.set()
            deleting.result(10)
            seqs = flushing.result(10)
    finally:
        pre_delete.disconnect(hold_the_deletion, sender=Device)
    assert seqs == {"d2": 1}
    assert stored("d1") == [] and latest("d1") == {}
    assert stored("d2") == [("temp", T0, 2.0)]


def wait_for_lock_wait(pids, timeout=10):
    """Whether the backend whose pid `pids` comes to hold waits on a lock within `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pids:
            with connection.cursor() as cursor:
                cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pids[0]])
                row = cursor.fetchone()
            if row and row[0] == "Lock":
                return True
        time.sleep(0.01)
    return False


def test_on_postgresql_no_constraint_is_checked_per_stored_value(db):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite keeps its constraints (migration 0005)")
    with connection.cursor() as cursor:
        cursor.execute("SELECT conrelid::regclass::text FROM pg_constraint WHERE contype = 'f' "
                       "AND confrelid = 'devices_device'::regclass AND conrelid::regclass::text LIKE 'telemetry_%%'")
        constrained = sorted(table for (table,) in cursor.fetchall())
    assert constrained == ["telemetry_hourrollup", "telemetry_minuterollup", "telemetry_rollupmark"]
