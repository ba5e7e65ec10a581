"""Readings of one device over a time range: raw points, or min, mean and max per time bucket
computed by the database, from the raw rows or from the stored rollups (telemetry.rollups).
All stop at `max_points` per key so any range stays fast. They read from settings.READ_DATABASE:
a replica, when there is one."""
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Avg, Count, F, Max, Min, Sum
from django.db.models.functions import Mod

from telemetry import retention
from telemetry.models import HourRollup, MinuteRollup, Reading, ValueKind, column_value

RAW_COLUMNS = ("ts", "value")
BUCKET_COLUMNS = ("ts", "min", "mean", "max", "count")


class RangeError(ValueError):
    """A range the API refuses; the message says why."""


@dataclass
class Series:
    key: str
    points: list  # rows of RAW_COLUMNS or BUCKET_COLUMNS
    truncated: bool = False


def device_keys(device):
    """The keys a device has ever reported, from its latest values."""
    return sorted(device.latest_values.values_list("key", flat=True))


def raw_series(device, keys, start, end, max_points):
    """Each key's readings with start <= ts < end, oldest first; at most `max_points`, the
    earliest ones, with `truncated` set when there were more."""
    series = []
    for key in keys:
        rows = (
            Reading.objects.using(settings.READ_DATABASE)
            .filter(device_id=device.pk, key=key, ts__gte=start, ts__lt=end)
            .order_by("ts")
            .values_list("ts", "kind", "num", "text")[: max_points + 1]
        )
        points = [[ts, column_value(kind, num, text)] for ts, kind, num, text in rows]
        series.append(Series(key, points[:max_points], truncated=len(points) > max_points))
    return series


def resolution_for(bucket_seconds):
    """Which rows answer a request: "hour" rollups for buckets of whole hours, "minute" rollups
    for buckets of whole minutes, else (raw points, or buckets of other widths) "raw"."""
    if bucket_seconds is None or bucket_seconds % 60:
        return "raw"
    return "hour" if bucket_seconds % 3600 == 0 else "minute"


def whole_units(start, end, resolution):
    """The range widened to whole minutes or hours for rollups: a rollup row is in or out whole."""
    unit = retention.TABLES[resolution][2]
    return start - start % unit, -(-end // unit) * unit


def check_bucket_count(start, end, bucket_seconds, max_points):
    width = bucket_seconds * 1000
    buckets = -(-(end - (start - start % width)) // width)
    if buckets > max_points:
        # Aligning the first bucket to the epoch can add one bucket: leave room for it.
        needed = -(-(end - start) // ((max_points - 1) * 1000))
        raise RangeError(
            f"{buckets} buckets of {bucket_seconds} s exceed the limit of {max_points} points; "
            f"use bucket={needed} or more, or a shorter range"
        )


def bucketed_series(device, keys, start, end, bucket_seconds, resolution):
    """Min, mean, max and count of each key's numeric and boolean readings per bucket of
    `bucket_seconds`, buckets aligned to the epoch; empty buckets are left out. From the raw
    rows, or the `resolution`'s rollups, whose sum / count is the mean: the same figures while
    the raw rows are kept (tests/test_rollups.py). check_bucket_count() first."""
    width = bucket_seconds * 1000
    if resolution == "raw":
        rows = Reading.objects.using(settings.READ_DATABASE).filter(
            device_id=device.pk, key__in=keys, ts__gte=start, ts__lt=end, kind__in=[ValueKind.NUMBER, ValueKind.BOOLEAN]
        ).annotate(bucket=F("ts") - Mod(F("ts"), width))
        figures = {"low": Min("num"), "mean": Avg("num"), "high": Max("num"), "count": Count("ts")}
    else:
        model = HourRollup if resolution == "hour" else MinuteRollup
        rows = model.objects.using(settings.READ_DATABASE).filter(
            device_id=device.pk, key__in=keys, start__gte=start, start__lt=end
        ).annotate(bucket=F("start") - Mod(F("start"), width))
        figures = {"low": Min("min"), "total": Sum("sum"), "high": Max("max"), "count": Sum("count")}
    points = {key: [] for key in keys}
    for row in rows.values("key", "bucket").annotate(**figures).order_by("key", "bucket"):
        # int(): SQLite's MOD returns a float, PostgreSQL's SUM of bigints a Decimal.
        count = int(row["count"])
        mean = row["mean"] if resolution == "raw" else row["total"] / count
        points[row["key"]].append([int(row["bucket"]), row["low"], mean, row["high"], count])
    return [Series(key, points[key]) for key in keys]
