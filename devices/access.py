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


def watchable_ids_by_user(users, device_ids):
    """{user id: the ids among `device_ids` that user may watch}, for many users in two queries:
    visible_devices()'s rule, for re-checking every open socket at once. `users` must be fresh
    from the database."""
    allowed = {user.pk: set() for user in users}
    watching = [user for user in users if user.is_authenticated and user.is_active]
    staff = [user.pk for user in watching if user.is_staff]
    others = {user.pk for user in watching if not user.is_staff}
    if staff:
        existing = set(Device.objects.filter(pk__in=device_ids).values_list("pk", flat=True))
        for user_id in staff:
            allowed[user_id] = set(existing)
    if others:
        rows = (
            Device.objects.filter(pk__in=device_ids)
            .filter(Q(owner__in=others) | Q(groups__user__in=others))
            .values_list("pk", "owner_id", "groups__user")
        )
        for device_id, owner_id, member_id in rows:
            for user_id in (owner_id, member_id):
                if user_id in others:
                    allowed[user_id].add(device_id)
    return allowed
