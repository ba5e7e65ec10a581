"""Deleting a device with its readings, now that readings and latest values name their device
without a foreign-key constraint on PostgreSQL.

PostgreSQL checked that constraint once per stored value, at commit: about a fifth of a flush's
time (docs/performance.md). What it guaranteed, that no reading outlives its device, holds by
locking instead. A flush stores the values only of devices its UPDATE found, and holds their
rows until it commits (telemetry.storage); deleting a device locks the device's row before
anything is deleted. So a flush either commits before the deletion removes the device's
readings, or waits for it and finds the device gone. SQLite has one writer at a time, and
keeps the constraint."""
from devices.models import Device


def lock_device_before_delete(sender, instance, using, **kwargs):
    """pre_delete of a Device, in the deletion's transaction, before any row is deleted."""
    list(Device.objects.using(using).select_for_update().filter(pk=instance.pk).values_list("pk", flat=True))
