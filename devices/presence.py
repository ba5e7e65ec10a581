"""Online and offline, as devices report it on their retained status topic."""
from django.db.models import Q

from devices.models import Device


def record_status(device_id, online, now, retained=False):
    """Stores a device's reported status: (known, changed), `known` False when no such device
    is registered, `changed` True only for the one call that turned `online` over.

    Every bridge gets every status message. The change is one conditional UPDATE on the row
    itself (the database checks the condition again when bridges race), so exactly one bridge
    sees `changed` and tells dashboards. `last_seen` is when the hub last heard from the device:
    every live `online` sets it. A `retained` message is the broker's copy, sent again at
    each subscription: it sets `online` if that is out of date (and `last_seen`, as the device
    is online now), and else changes nothing."""
    turned = {"online": online, **({"last_seen": now} if online else {})}
    if Device.objects.filter(~Q(online=online), pk=device_id).update(**turned):
        return True, True
    devices = Device.objects.filter(pk=device_id)
    if online and not retained:
        return devices.update(last_seen=now) == 1, False
    return devices.exists(), False
