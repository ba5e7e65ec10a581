"""Online and offline, as devices report it on their status topic."""
from devices.models import Device


def record_status(device_id, online, now):
    """Stores a device's reported status; False when no such device is registered."""
    changes = {"online": online}
    if online:
        changes["last_seen"] = now
    return Device.objects.filter(pk=device_id).update(**changes) == 1
