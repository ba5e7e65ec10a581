"""Stored rollups and retention (telemetry.rollups, telemetry.retention, telemetry.upkeep): the
rollups give what the raw rows give, duplicates and late readings included; retention deletes
exactly what has expired at each resolution; the history API answers across the boundary."""
import asyncio
import io
import random
import threading
import time

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from bridge.protocol import MAX_NUMBER, Sample
from telemetry import history, retention, rollups
from telemetry.models import HourRollup, MinuteRollup, Reading, RollupMark
from telemetry.storage import store_samples
from telemetry.upkeep import Upkeep
from tests.rollup_helpers import roll_up_everything

pytestmark = pytest.mark.postgres

DAY = 86_400_000
HOUR = 3_600_000
MINUTE = 60_000
T0 = 1_764_000_000_000 - 1_764_000_000_000 % HOUR  # a whole hour, epoch milliseconds


@pytest.fixture
def sensor(make_user, make_device):
    return make_device("sensor-1", make_user("owner"))


def store(device_id, *samples):
    store_samples({device_id: [Sample(ts, values) for ts, values in samples]}, timezone.now())


def readings_over(start, hours, seed):
    """Readings of two keys every 7-13 s over `hours`, values exact in binary (sums stay exact)."""
    chance = random.Random(seed)
    samples, ts = [], start
    while ts < start + hours * HOUR:
        samples.append((ts, {"temp": chance.randint(-400, 400) / 4, "door": chance.random() < 0.5}))
        ts += chance.randint(7000, 13000)
    return samples


def both(device, keys, start, end, bucket):
    """The API's buckets from the raw rows and from the rollups bucket's resolution."""
    resolution = history.resolution_for(bucket)
    assert resolution != "raw"
    raw = history.bucketed_series(device, keys, start, end, bucket, "raw")
    rolled = history.bucketed_series(device, keys, start, end, bucket, resolution)
    return [(series.key, series.points) for series in raw], [(series.key, series.points) for series in rolled]


def test_rollups_equal_the_raw_rows_with_duplicates_and_late_readings(sensor):
    samples = readings_over(T0, 3, seed=14)
    store(sensor.pk, *samples[::2])
    roll_up_everything()
    # Redelivered (stored once), and late: the minutes in between, after their rollups were made.
    store(sensor.pk, *samples[::2][:50])
    store(sensor.pk, *samples[1::2])
    store(sensor.pk, (T0 + 90 * MINUTE + 1, {"temp": 1000.0}), (T0 + 90 * MINUTE + 2, {"temp": 1000.0}))
    roll_up_everything()
    assert Reading.objects.filter(key="temp").count() == len(samples) + 2
    assert not RollupMark.objects.exists()
    for bucket in (60, 300, 3600, 7200):
        raw, rolled = both(sensor, ["temp", "door"], T0, T0 + 3 * HOUR, bucket)
        assert rolled == raw and raw[0][1]
    # First and last follow reading time, not arrival.
    hour = HourRollup.objects.get(key="temp", start=T0)
    temps = [values["temp"] for _, values in sorted(samples) if _ < T0 + HOUR]
    assert (hour.first, hour.last, hour.count) == (temps[0], temps[-1], len(temps))


def test_the_keys_of_a_device_marked_in_different_minutes_get_each_their_own(sensor):
    """The job computes every marked minute in one statement: each key's minutes are its own,
    whatever other keys of the device were marked in them, and an hour later too."""
    far = T0 + 65 * MINUTE
    store(sensor.pk, (T0 + 1, {"temp": 1.0}), (T0 + MINUTE + 1, {"rh": 40.0}),
          (T0 + MINUTE + 2, {"temp": 3.0, "rh": 42.0}), (far, {"rh": 50.0}))
    roll_up_everything()
    assert sorted(MinuteRollup.objects.values_list("key", "start", "count", "first", "last")) == [
        ("rh", T0 + MINUTE, 2, 40.0, 42.0), ("rh", far, 1, 50.0, 50.0),
        ("temp", T0, 1, 1.0, 1.0), ("temp", T0 + MINUTE, 1, 3.0, 3.0),
    ]
    raw, rolled = both(sensor, ["temp", "rh"], T0, far + MINUTE, 60)
    assert rolled == raw


def test_rolling_up_again_changes_nothing(sensor):
    store(sensor.pk, *readings_over(T0, 1, seed=3))
    roll_up_everything()
    before = sorted(MinuteRollup.objects.values_list("key", "start", "min", "max", "sum", "count", "first", "last"))
    RollupMark.objects.bulk_create(
        RollupMark(device_id=sensor.pk, key=key, minute=start) for key, start, *_ in before
    )
    roll_up_everything()
    assert sorted(MinuteRollup.objects.values_list("key", "start", "min", "max", "sum", "count", "first", "last")) == before


def test_a_minute_marked_again_while_it_is_computed_keeps_its_mark(sensor):
    store(sensor.pk, (T0, {"temp": 1.0}))
    taken = list(RollupMark.objects.values_list("device_id", "key", "minute", "generation"))
    store(sensor.pk, (T0 + 1, {"temp": 2.0}))  # a flush that commits while the job computes
    rollups._unmark(taken)
    assert RollupMark.objects.get().generation == 2
    roll_up_everything()
    assert MinuteRollup.objects.get().count == 2


def test_a_minute_is_rolled_up_once_it_has_ended(sensor):
    store(sensor.pk, (T0 + 1000, {"temp": 1.0}))
    assert rollups.roll_up_marked(T0 + MINUTE, 10) == (0, 0)
    assert rollups.roll_up_marked(T0 + MINUTE + rollups.SETTLE_MS, 10) == (1, 0)
    assert MinuteRollup.objects.get().count == 1 and HourRollup.objects.get().count == 1


def test_the_largest_numbers_the_intake_takes_add_up_in_the_minute_and_the_hour(sensor):
    """PostgreSQL refuses a sum that overflows, which would fail every batch holding the minute:
    bridge.protocol.MAX_NUMBER keeps sums finite."""
    store(sensor.pk, *[(T0 + second * 1000, {"temp": MAX_NUMBER}) for second in range(3)])
    roll_up_everything()
    for model in (MinuteRollup, HourRollup):
        row = model.objects.get(device_id=sensor.pk, key="temp")
        assert (row.sum, row.count, row.max) == (3 * MAX_NUMBER, 3, MAX_NUMBER)


def test_strings_are_not_rolled_up(sensor):
    store(sensor.pk, (T0, {"mode": "eco"}))
    assert not RollupMark.objects.exists()


# Retention.


def expire(now_ms):
    """A retention pass at `now_ms`, as the bridge runs it."""
    upkeep = Upkeep(clock=lambda: now_ms)
    async_to_sync(upkeep.retention_pass)()
    return upkeep.counts


def kept(model, column, device_id):
    return sorted(model.objects.filter(device_id=device_id).values_list(column, flat=True))


def test_retention_deletes_exactly_what_expired_at_each_resolution_with_a_device_override(
    settings, sensor, make_device, monkeypatch
):
    other = make_device("sensor-2", sensor.owner)
    monkeypatch.setattr(retention, "DELETE_BATCH", 3)  # several batches per series, the keys' rows sharing times
    now = T0 + 10 * DAY
    times = [now - days * DAY - offset for days in range(8) for offset in (1, HOUR + 1, 2 * HOUR + 1)]
    for device in (sensor, other):
        store(device.pk, *[(ts, {"temp": 1.0, "rh": 40.0}) for ts in times])
    roll_up_everything(now + HOUR)  # while everything is kept: these readings are days late
    settings.RETAIN_RAW_DAYS, settings.RETAIN_MINUTE_DAYS, settings.RETAIN_HOUR_DAYS = 2, 4, 6
    other.retain_raw_days, other.retain_minute_days = 0, 1
    other.save()
    counts = expire(now)

    def expected(days, unit):
        before = now - days * DAY
        return sorted({ts - ts % unit for ts in times if ts - ts % unit >= before - before % unit})

    assert kept(MinuteRollup, "start", sensor.pk) == sorted(expected(4, MINUTE) * 2)
    assert kept(HourRollup, "start", sensor.pk) == sorted(expected(6, HOUR) * 2)
    assert kept(MinuteRollup, "start", other.pk) == sorted(expected(1, MINUTE) * 2)
    assert kept(HourRollup, "start", other.pk) == sorted(expected(6, HOUR) * 2)  # the hub's
    assert kept(Reading, "ts", sensor.pk) == sorted(expected(2, 1) * 2)  # temp and rh
    assert kept(Reading, "ts", other.pk) == sorted(times * 2)  # 0: forever
    assert counts["expired_raw"] == 2 * (len(times) - len(expected(2, 1)))
    assert sum(expire(now).values()) == 0  # nothing left to delete


def test_raw_rows_stay_until_their_minute_is_rolled_up(settings, sensor):
    settings.RETAIN_RAW_DAYS = 1
    now = T0 + 10 * DAY
    store(sensor.pk, (now - 2 * DAY, {"temp": 1.0}))
    expire(now)
    assert Reading.objects.count() == 1
    roll_up_everything(now - 2 * DAY + 2 * MINUTE)
    expire(now)
    assert not Reading.objects.exists() and MinuteRollup.objects.count() == 1


def test_a_reading_later_than_its_raw_retention_is_not_rolled_up_over_the_minute(settings, sensor):
    settings.RETAIN_RAW_DAYS = 1
    now = T0 + 10 * DAY
    store(sensor.pk, (T0, {"temp": 1.0}), (T0 + 1, {"temp": 3.0}))
    roll_up_everything(T0 + 2 * MINUTE)
    expire(now)
    store(sensor.pk, (T0 + 2, {"temp": 100.0}))  # days late: its minute's other readings are gone
    assert rollups.roll_up_marked(now, 10) == (0, 1)
    minute = MinuteRollup.objects.get()
    assert (minute.min, minute.max, minute.count) == (1.0, 3.0, 2)


def test_upkeep_rolls_up_in_passes_and_counts(sensor, monkeypatch):
    monkeypatch.setattr(rollups, "MARKS_PER_PASS", 2)
    store(sensor.pk, *[(T0 + minute * MINUTE, {"temp": 1.0}) for minute in range(5)])
    upkeep = Upkeep(clock=lambda: T0 + DAY)
    async_to_sync(upkeep.roll_up_pass)()
    assert upkeep.counts["minutes_rolled_up"] == 5 and upkeep.marked == 0 and upkeep.rolled_at is not None
    assert MinuteRollup.objects.count() == 5



def test_on_postgresql_a_flush_does_not_wait_for_the_rollup_job(sensor, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("on SQLite the job shares the bridge's database thread: one writer at a time")
    in_batch, release = threading.Event(), threading.Event()

    def long_batch(now_ms, limit):
        in_batch.set()
        release.wait(30)
        return 0, 0

    monkeypatch.setattr(rollups, "roll_up_marked", long_batch)
    upkeep = Upkeep(clock=lambda: T0 + DAY)

    async def flush_during_a_batch():
        job = asyncio.create_task(upkeep.roll_up_pass())
        try:
            assert await asyncio.to_thread(in_batch.wait, 10)
            # The bridge's flushes run where database_sync_to_async runs them.
            flushed = database_sync_to_async(store_samples)({sensor.pk: [Sample(T0, {"temp": 1.0})]}, timezone.now())
            return await asyncio.wait_for(flushed, 10), job.done()
        finally:
            release.set()
            await job

    assert async_to_sync(flush_during_a_batch)() == ({sensor.pk: 1}, False)
    assert upkeep.rolled_at is not None


def test_on_postgresql_the_jobs_close_their_connection_after_each_pass(sensor):
    if connection.vendor != "postgresql":
        pytest.skip("on SQLite the jobs use the bridge's connection")

    def other_connections():
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND pid <> pg_backend_pid()")
            return cursor.fetchone()[0]

    before = other_connections()
    store(sensor.pk, (T0, {"temp": 1.0}))
    upkeep = Upkeep(clock=lambda: T0 + DAY)
    async_to_sync(upkeep.roll_up_pass)()
    async_to_sync(upkeep.retention_pass)()
    assert upkeep.counts["minutes_rolled_up"] == 1  # the jobs did reach the database
    deadline = time.monotonic() + 10  # a backend leaves pg_stat_activity just after its client closes
    while (left := other_connections()) > before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert left == before


def test_on_postgresql_the_hub_runs_without_jit(sensor):
    """On a filled database JIT compiled every day partition's expressions for each rollup batch:
    0.8 s of compiling for a few milliseconds of work (hub/settings.py)."""
    if connection.vendor != "postgresql":
        pytest.skip("JIT is PostgreSQL's")
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone() == ("off",)


# The history API across the boundary where raw rows have expired.


def test_the_api_answers_from_rollups_where_raw_rows_expired_and_says_so(settings, client, sensor):
    client.force_login(sensor.owner)
    now = int(time.time() * 1000)
    old, recent = now - 40 * DAY, now - 10 * DAY
    old, recent = old - old % HOUR, recent - recent % HOUR
    store(sensor.pk, (old, {"temp": 2.0}), (old + 1000, {"temp": 4.0}), (recent, {"temp": 6.0}))
    roll_up_everything()
    settings.RETAIN_RAW_DAYS = 30
    expire(now)
    assert list(Reading.objects.values_list("ts", flat=True)) == [recent]

    def ask(start, end, bucket=None):
        query = f"keys=temp&from={start}&to={end}" + (f"&bucket={bucket}" if bucket else "")
        response = client.get(f"/api/devices/sensor-1/readings?{query}")
        assert response.status_code == 200
        return response.json()

    raw = ask(old, now)
    cutoff = retention.device_cutoffs(sensor, now).raw
    assert raw["resolution"] == "raw" and abs(raw["expired_before"] - cutoff) < 60_000
    assert raw["series"]["temp"]["points"] == [[recent, 6.0]]
    gone = ask(old, old + HOUR)
    as_csv = client.get(f"/api/devices/sensor-1/readings?keys=temp&from={old}&to={old + HOUR}&format=csv")
    assert abs(int(as_csv["X-Expired-Before"]) - gone["expired_before"]) < 60_000 and as_csv["X-Resolution"] == "raw"
    assert gone["expired_before"] is not None and gone["series"]["temp"]["points"] == []
    assert ask(recent, now)["expired_before"] is None
    hourly = ask(old, now, 3600)
    assert hourly["resolution"] == "hour" and hourly["expired_before"] is None
    assert hourly["series"]["temp"]["points"] == [[old, 2.0, 3.0, 4.0, 2], [recent, 6.0, 6.0, 6.0, 1]]
    minutes = ask(old + 1, old + 5 * MINUTE + 1, 120)
    assert minutes["resolution"] == "minute" and (minutes["from"], minutes["to"]) == (old, old + 6 * MINUTE)
    assert minutes["series"]["temp"]["points"] == [[old, 2.0, 3.0, 4.0, 2]]
    # Buckets of other widths come from raw rows, which say where they expired.
    odd = ask(old, old + HOUR, 90)
    assert odd["resolution"] == "raw" and odd["expired_before"] is not None


# Who may set a device's retention.


def test_a_device_owner_sets_its_retention_and_a_watcher_may_not(client, sensor, make_user, settings):
    settings.RETAIN_RAW_DAYS, settings.RETAIN_MINUTE_DAYS, settings.RETAIN_HOUR_DAYS = 30, 400, 0
    path = "/api/devices/sensor-1/retention"
    client.force_login(sensor.owner)
    answer = client.patch(path, {"raw_days": 7, "hour_days": 0}, content_type="application/json")
    assert answer.status_code == 200
    assert answer.json() == {"raw_days": 7, "minute_days": None, "hour_days": 0,
                             "effective": {"raw": 7, "minute": 400, "hour": 0}}
    assert client.patch(path, {"raw_days": None}, content_type="application/json").json()["effective"]["raw"] == 30
    for bad in ({"raw_days": -1}, {"raw_days": 40000}, {"raw": 7}, {"raw_days": "soon"}):
        response = client.patch(path, bad, content_type="application/json")
        assert response.status_code == 400, bad
    sensor.refresh_from_db()
    assert (sensor.retain_raw_days, sensor.retain_minute_days, sensor.retain_hour_days) == (None, None, 0)
    client.force_login(make_user("stranger"))
    assert client.patch(path, {"raw_days": 1}, content_type="application/json").status_code == 404


def test_the_backfill_command_rolls_up_readings_stored_before_rollups(sensor):
    samples = readings_over(T0, 2, seed=5)
    store(sensor.pk, *samples)
    RollupMark.objects.all().delete()  # as if stored before rollups existed
    out = io.StringIO()
    call_command("rollupbackfill", "--chunk", "100", stdout=out)
    assert f"{len(samples) * 2} of {len(samples) * 2} readings" in out.getvalue()
    roll_up_everything()
    raw, rolled = both(sensor, ["temp", "door"], T0, T0 + 2 * HOUR, 3600)
    assert rolled == raw and raw[0][1]


def test_a_minute_still_running_is_marked_once_by_a_bridge_and_rolled_up_whole(sensor):
    now = int(time.time() * 1000)
    minute = now - now % MINUTE
    received = timezone.now()
    store_samples({sensor.pk: [Sample(minute, {"temp": 1.0})]}, received)
    RollupMark.objects.update(generation=7)
    store_samples({sensor.pk: [Sample(minute + 1, {"temp": 3.0})]}, received)
    assert RollupMark.objects.get().generation == 7  # not written again
    roll_up_everything(minute + MINUTE + rollups.SETTLE_MS)
    rolled = MinuteRollup.objects.get()
    assert (rolled.count, rolled.sum) == (2, 4.0)
    # Once its minute has ended, a late reading for it marks it again.
    later = timezone.datetime.fromtimestamp((minute + MINUTE + 1) / 1000, timezone.get_current_timezone())
    store_samples({sensor.pk: [Sample(minute + 2, {"temp": 5.0})]}, later)
    roll_up_everything(minute + MINUTE + rollups.SETTLE_MS)
    assert MinuteRollup.objects.get().count == 3
