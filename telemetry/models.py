"""Readings are stored one row per (device, key, timestamp): narrow rows that bulk-insert fast,
keyed by (device, key, ts), which serves "device D, key K, between T1 and T2". On PostgreSQL
the table is partitioned by day of ts (telemetry/migrations/0003_reading_layout.py), on SQLite
clustered by (device, ts, key) without rowid (0004), so that one device's values of an instant
share a page; docs/storage.md explains the choice."""
from django.db import models

from devices.models import Device


class ValueKind(models.TextChoices):
    NUMBER = "n"
    BOOLEAN = "b"
    STRING = "s"


def value_columns(value):
    """The (kind, num, text) columns that store a reading value."""
    if isinstance(value, bool):
        return ValueKind.BOOLEAN, float(value), None
    if isinstance(value, str):
        return ValueKind.STRING, None, value
    return ValueKind.NUMBER, float(value), None


def column_value(kind, num, text):
    """The reading value stored in (kind, num, text)."""
    if kind == ValueKind.BOOLEAN:
        return bool(num)
    if kind == ValueKind.STRING:
        return text
    return num


class KeyedValue(models.Model):
    """A value of one key at one instant, in the columns value_columns() fills."""

    key = models.CharField(max_length=64)
    ts = models.BigIntegerField(help_text="Epoch milliseconds.")
    kind = models.CharField(max_length=1, choices=ValueKind.choices)
    num = models.FloatField(null=True, blank=True)
    text = models.CharField(max_length=256, null=True, blank=True)

    class Meta:
        abstract = True

    @property
    def value(self):
        return column_value(self.kind, self.num, self.text)


class Reading(KeyedValue):
    # No id: the key is the row's identity, and the only index (no index of its own on device).
    pk = models.CompositePrimaryKey("device", "key", "ts")
    # No constraint on PostgreSQL: telemetry.deletion says what keeps readings with their device.
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="readings", db_index=False,
                               db_constraint=False)

    def __str__(self):
        return f"{self.device_id} {self.key}={self.value!r} @{self.ts}"


class LatestValue(KeyedValue):
    """The newest value of each key of each device, kept by the bridge as readings arrive."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="latest_values", db_index=False,
                               db_constraint=False)  # as Reading.device

    class Meta:
        constraints = [models.UniqueConstraint(fields=["device", "key"], name="latest_device_key")]


class RollupMark(models.Model):
    """A minute of one device's key whose readings changed since its rollup was computed.

    Written by the flush in the transaction that stores the readings; telemetry.rollups
    recomputes the minute from the raw rows and removes the mark, unless `generation` moved on
    meanwhile (another flush touched the minute again), so no change is ever missed."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="+", db_index=False)
    key = models.CharField(max_length=64)
    minute = models.BigIntegerField(help_text="Epoch milliseconds of the minute's start.")
    generation = models.BigIntegerField(default=1)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["device", "key", "minute"], name="rollup_mark_device_key_minute")]
        indexes = [models.Index(fields=["minute"], name="rollup_mark_minute")]


class Rollup(models.Model):
    """Min, max, sum, count, first and last (by reading time) of one key's numeric and boolean
    readings over one interval starting at `start`: the mean is sum / count."""

    key = models.CharField(max_length=64)
    start = models.BigIntegerField(help_text="Epoch milliseconds of the interval's start.")
    min = models.FloatField()
    max = models.FloatField()
    sum = models.FloatField()
    count = models.BigIntegerField()
    first = models.FloatField()
    last = models.FloatField()

    class Meta:
        abstract = True


class MinuteRollup(Rollup):
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="+", db_index=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["device", "key", "start"], name="minute_rollup_device_key_start")]


class HourRollup(Rollup):
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="+", db_index=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["device", "key", "start"], name="hour_rollup_device_key_start")]
