from devices.models import Device
from telemetry.events import snapshot_frame


def device_snapshots(device_ids):
    """Snapshot frames (status, latest values, seq) of the given devices."""
    devices = Device.objects.filter(pk__in=device_ids).prefetch_related("latest_values")
    return [snapshot_frame(device, device.latest_values.all()) for device in devices]
