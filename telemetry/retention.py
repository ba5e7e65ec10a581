"""How long each resolution of a device's history is kept, and deleting what has expired.

Each resolution (raw readings, 1-minute and 1-hour rollups) is kept for the device's own
number of days if it has one (Device.retain_*_days), else the hub's HUB_RETAIN_*_DAYS; 0 keeps
it forever. On PostgreSQL raw readings go first by whole day partitions, for the days every
device's raw retention has passed (drop_expired_days); what is left expired goes in small
batches, one key of one device at a time, so a pass never holds the database for long
(telemetry.upkeep runs it in the bridge).
"""
from dataclasses import dataclass

from django.conf import settings
from django.db import connection

from devices.models import Device
from telemetry import partitions
from telemetry.models import HourRollup, LatestValue, MinuteRollup, Reading, RollupMark

DAY_MS = 86_400_000
MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DELETE_BATCH = 1000
RESOLUTIONS = ("raw", "minute", "hour")
# Each resolution's table, its time column, and the unit its cutoff is rounded down to, so
# that a rollup row is either wholly before the cutoff or wholly after it.
TABLES = {"raw": (Reading, "ts", 1), "minute": (MinuteRollup, "start", MINUTE_MS), "hour": (HourRollup, "start", HOUR_MS)}
DEVICE_FIELDS = ("retain_raw_days", "retain_minute_days", "retain_hour_days")


@dataclass(frozen=True)
class Cutoffs:
    """Per resolution, the epoch milliseconds before which its rows have expired; None: kept forever."""

    raw: int | None
    minute: int | None
    hour: int | None

    def rollable(self, minute):
        """Whether a minute can be rolled up: its raw rows, and the minute rows of its hour, are all kept."""
        raw_kept = self.raw is None or minute >= self.raw
        return raw_kept and (self.minute is None or minute - minute % HOUR_MS >= self.minute)


def hub_days():
    return settings.RETAIN_RAW_DAYS, settings.RETAIN_MINUTE_DAYS, settings.RETAIN_HOUR_DAYS


def effective_days(overrides):
    """The days each resolution is kept, from a device's overrides (None: the hub's setting)."""
    return tuple(hub if own is None else own for own, hub in zip(overrides, hub_days()))


def cutoffs(days, now_ms):
    """The Cutoffs of (raw, minute, hour) days of retention at `now_ms`."""
    found = []
    for resolution, kept in zip(RESOLUTIONS, days):
        unit = TABLES[resolution][2]
        before = now_ms - kept * DAY_MS
        found.append(before - before % unit if kept else None)
    return Cutoffs(*found)


def device_cutoffs(device, now_ms):
    return cutoffs(effective_days([getattr(device, field) for field in DEVICE_FIELDS]), now_ms)


def cutoffs_by_device(device_ids, now_ms):
    """{device id: Cutoffs} for the devices given, in one query."""
    rows = Device.objects.filter(pk__in=device_ids).values_list("pk", *DEVICE_FIELDS)
    return {device_id: cutoffs(effective_days(overrides), now_ms) for device_id, *overrides in rows}


def expired_series(now_ms):
    """(resolution, device id, key, cutoff) for every key of every device whose rows of a
    resolution expire at `now_ms`; on SQLite raw rows once per device with the key None, all its
    keys together, as they are ordered by (device, ts, key) there and one key's rows lie among
    the others' (PostgreSQL's primary key, (device, key, ts), gives one key's rows in time order).
    Raw rows stay from the oldest minute the rollup job has still to compute, so that no minute
    is rolled up after its readings are gone."""
    oldest_marked = oldest_marked_minute()
    keys = {}
    for device_id, key in LatestValue.objects.order_by("device_id", "key").values_list("device_id", "key"):
        keys.setdefault(device_id, []).append(key)
    raw_by_device = connection.vendor == "sqlite"
    found = []
    for device_id, *overrides in Device.objects.filter(pk__in=keys).order_by("pk").values_list("pk", *DEVICE_FIELDS):
        limits = cutoffs(effective_days(overrides), now_ms)
        for resolution in RESOLUTIONS:
            before = getattr(limits, resolution)
            if resolution == "raw" and before is not None and oldest_marked is not None:
                before = min(before, oldest_marked)
            if before is not None:
                series_keys = [None] if resolution == "raw" and raw_by_device else keys[device_id]
                found.extend((resolution, device_id, key, before) for key in series_keys)
    return found


def oldest_marked_minute():
    return RollupMark.objects.order_by("minute").values_list("minute", flat=True).first()


def raw_floor(now_ms):
    """The earliest raw cutoff of any device at `now_ms`, and no later than the oldest minute
    the rollup job has still to compute; None when some device keeps its raw rows forever."""
    floor = oldest_marked_minute()
    for overrides in Device.objects.values_list(*DEVICE_FIELDS):
        before = cutoffs(effective_days(overrides), now_ms).raw
        if before is None:
            return None
        floor = before if floor is None else min(floor, before)
    return floor


def drop_expired_days(now_ms):
    """Drops the day partitions of raw readings (PostgreSQL) wholly before raw_floor(); returns
    how many readings they held."""
    floor = raw_floor(now_ms)
    return 0 if floor is None else partitions.drop_partitions_before(floor)


def delete_expired(resolution, device_id, key, before, limit):
    """Deletes the oldest rows of one key of a device (None: of all its keys) older than `before`,
    those up to the limit-th one's time; returns how many. That is `limit` rows, or a few more
    where several keys share that time; fewer only when no more have expired."""
    model, column, _ = TABLES[resolution]
    expired = model.objects.filter(device_id=device_id, **{f"{column}__lt": before})
    if key is not None:
        expired = expired.filter(key=key)
    last = list(expired.order_by(column).values_list(column, flat=True)[limit - 1:limit])
    if last:
        expired = expired.filter(**{f"{column}__lte": last[0]})
    return expired.delete()[0]
