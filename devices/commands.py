"""A command's life: pending until its device is online, sent over MQTT, then succeeded or
failed by the device's answer, or expired if its ttl ran out while it waited.

Each step is one conditional UPDATE, so several bridges can share the work safely: only one
of them moves a command from one status to the next.
"""
from django.utils import timezone

from devices.models import Command

Status = Command.Status


def create_command(device_id, user, name, params, ttl):
    """A pending command, recorded with its sender for the audit trail."""
    return Command.objects.create(
        device_id=device_id, created_by=user, created_by_name=user.get_username(), name=name, params=params, ttl=ttl
    )


def claim_for_sending(command_id, now):
    """The command, now marked sent, if it was pending, unexpired and its device is online."""
    claimed = Command.objects.filter(
        pk=command_id, status=Status.PENDING, expires_at__gt=now, device__online=True
    ).update(status=Status.SENT, sent_at=now)
    return Command.objects.get(pk=command_id) if claimed else None


def release(command_id):
    """Puts back a claimed command that could not be handed to the broker."""
    Command.objects.filter(pk=command_id, status=Status.SENT).update(status=Status.PENDING, sent_at=None)


def sendable_ids(now, device_id=None):
    """Pending, unexpired commands whose device is online, oldest first."""
    commands = Command.objects.filter(status=Status.PENDING, expires_at__gt=now, device__online=True)
    if device_id is not None:
        commands = commands.filter(device_id=device_id)
    return list(commands.order_by("created").values_list("pk", flat=True))


def expire_due(now):
    """Marks expired each pending command whose ttl ran out; returns those this call expired."""
    due = Command.objects.filter(status=Status.PENDING, expires_at__lte=now).values_list("pk", flat=True)
    expired = [
        pk
        for pk in list(due)
        if Command.objects.filter(pk=pk, status=Status.PENDING).update(status=Status.EXPIRED, finished_at=now)
    ]
    return list(Command.objects.filter(pk__in=expired))


def record_result(device_id, answer):
    """Stores a device's answer to a command sent to it; None if it answers nothing we sent."""
    updated = Command.objects.filter(
        pk=answer.command_id, device_id=device_id, status__in=[Status.SENT, Status.PENDING]
    ).update(
        status=Status.SUCCEEDED if answer.ok else Status.FAILED,
        result=answer.result,
        error=answer.error,
        finished_at=timezone.now(),
    )
    return Command.objects.get(pk=answer.command_id) if updated else None
