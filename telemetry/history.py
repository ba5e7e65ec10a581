"""Readings of one device over a time range: raw points, or min, mean and max per time bucket
computed by the database. Both stop at `max_points` per key so any range stays fast. They read
from settings.READ_DATABASE: a replica, when there is one."""
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Avg, Count, F, Max, Min
from django.db.models.functions import Mod

from telemetry.models import Reading, ValueKind, column_value

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


def bucketed_series(device, keys, start, end, bucket_seconds, max_points):
    """Min, mean, max and count of each key's numeric and boolean readings per bucket of
    `bucket_seconds`, buckets aligned to the epoch; empty buckets are left out."""
    width = bucket_seconds * 1000
    buckets = -(-(end - (start - start % width)) // width)
    if buckets > max_points:
        # Aligning the first bucket to the epoch can add one bucket: leave room for it.
        needed = -(-(end - start) // ((max_points - 1) * 1000))
        raise RangeError(
            f"{buckets} buckets of {bucket_seconds} s exceed the limit of {max_points} points; "
            f"use bucket={needed} or more, or a shorter range"
        )
    rows = (
        Reading.objects.using(settings.READ_DATABASE).filter(
            device_id=device.pk, key__in=keys, ts__gte=start, ts__lt=end, kind__in=[ValueKind.NUMBER, ValueKind.BOOLEAN]
        )
        .annotate(bucket=F("ts") - Mod(F("ts"), width))
        .values("key", "bucket")
        .annotate(low=Min("num"), mean=Avg("num"), high=Max("num"), count=Count("id"))
        .order_by("key", "bucket")
    )
    points = {key: [] for key in keys}
    for row in rows:
        # int(): SQLite's MOD returns a float.
        points[row["key"]].append([int(row["bucket"]), row["low"], row["mean"], row["high"], row["count"]])
    return [Series(key, points[key]) for key in keys]
