"""Who may see and command which device: the one place that decides.

The owner and staff may watch and command a device; members of a group the device is
shared with may watch it only. Anyone else learns nothing, not even that it exists.
"""
from django.db.models import Q

from devices.models import Device


def visible_devices(user):
    """The devices `user` may watch."""
    if not user.is_authenticated or not user.is_active:
        return Device.objects.none()
    if user.is_staff:
        return Device.objects.all()
    return Device.objects.filter(Q(owner=user) | Q(groups__user=user)).distinct()


def commandable_devices(user):
    """The devices `user` may send commands to."""
    if not user.is_authenticated or not user.is_active:
        return Device.objects.none()
    if user.is_staff:
        return Device.objects.all()
    return Device.objects.filter(owner=user)


def watchable_ids(user, device_ids):
    """The ids among `device_ids` that `user` may watch."""
    return set(visible_devices(user).filter(pk__in=device_ids).values_list("pk", flat=True))


def can_command(user, device_id):
    return commandable_devices(user).filter(pk=device_id).exists()
