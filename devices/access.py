"""Who may see and command which device: the one place that decides.

The owner and staff may watch and command a device; members of a group the device is
shared with may watch it only. Anyone else learns nothing, not even that it exists.
"""
from collections import defaultdict

from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS
from django.db.models import Q

from devices.models import Device


def visible_devices(user):
    """The devices `user` may watch."""
    if not user.is_authenticated or not user.is_active:
        return Device.objects.none()
    if user.is_staff:
        return Device.objects.all()
    return Device.objects.filter(Q(owner=user) | Q(groups__user=user)).distinct()


def visible_devices_on(database, user):
    """visible_devices(user) as a query on `database`, a read replica: who may see what is still
    decided on the primary, so a device taken from a user is gone at once, whatever the lag."""
    if database == DEFAULT_DB_ALIAS:
        return visible_devices(user)
    devices = Device.objects.using(database)
    if user.is_authenticated and user.is_active and user.is_staff:
        return devices.all()
    return devices.filter(pk__in=list(visible_devices(user).values_list("pk", flat=True)))


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
    """{user id: the ids among `device_ids` that user may watch}, for many users in three
    queries: visible_devices()'s rule (owner, group member, staff) worked out from the devices'
    owners, the groups they are shared with and the users' groups, to re-check every open
    socket at once. `users` must be fresh from the database."""
    allowed = {user.pk: set() for user in users}
    watching = [user for user in users if user.is_authenticated and user.is_active]
    if not watching:
        return allowed
    owners = dict(Device.objects.filter(pk__in=device_ids).values_list("pk", "owner_id"))
    others = {user.pk for user in watching if not user.is_staff}
    shared = defaultdict(set)  # group id -> its devices among device_ids
    for device_id, group_id in Device.groups.through.objects.filter(device_id__in=owners).values_list("device_id", "group_id"):
        shared[group_id].add(device_id)
    memberships = get_user_model().groups.through.objects.filter(user_id__in=others, group_id__in=shared)
    for user_id, group_id in memberships.values_list("user_id", "group_id"):
        allowed[user_id] |= shared[group_id]
    for device_id, owner_id in owners.items():
        if owner_id in others:
            allowed[owner_id].add(device_id)
    for user in watching:
        if user.is_staff:
            allowed[user.pk] = set(owners)
    return allowed
