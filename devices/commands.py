"""A command's life: pending until its device is online, sent over MQTT, then succeeded or
failed by the device's answer; expired if its ttl ran out while it waited to be sent, or if
its timeout ran out while it waited, sent, for an answer; failed if the hub cannot encode it.

Every status change is one conditional UPDATE here, so several bridges can share the work
safely: only one of them moves a command from one status to the next.
"""
import hashlib
import uuid
from datetime import timedelta

import orjson
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from bridge.protocol import command_payload
from devices.models import Command, IdempotencyKey
from devices.payloads import MAX_SAFE_INTEGER, UnsafeJson, check_json

Status = Command.Status

# A retry with the same Idempotency-Key gets the first command for at least this long.
IDEMPOTENCY_KEY_RETENTION = timedelta(hours=24)
# Printable ASCII without spaces, as in a header value; a UUID fits.
IDEMPOTENCY_KEY_RE = r"[\x21-\x7e]{1,255}"


class KeyReused(Exception):
    """An Idempotency-Key the user gave before for another request."""


def check_params(name, params):
    """Raises UnsafeJson, saying where and why, for params the hub could not send or a device
    not parse exactly: what devices.payloads.check_json refuses, any number beyond ±2^53
    (stored as jsonb, a large float comes back as a larger integer), or a command payload
    over HUB_MAX_PAYLOAD_BYTES."""
    try:
        check_json(params, max_float=MAX_SAFE_INTEGER)
    except UnsafeJson as exc:
        raise UnsafeJson(f"params: {exc}") from None
    size = len(command_payload(uuid.UUID(int=0), name, params))
    if size > settings.MAX_PAYLOAD_BYTES:
        raise UnsafeJson(
            f"params: the command would be {size} bytes over MQTT, the limit is {settings.MAX_PAYLOAD_BYTES}"
        )


def create_command(device_id, user, name, params, ttl, timeout=None):
    """A pending command, recorded with its sender for the audit trail; `timeout` None: the
    setting's. Its params are checked by the caller (check_params), where they come in."""
    command = Command(
        device_id=device_id, created_by=user, created_by_name=user.get_username(), name=name, params=params, ttl=ttl
    )
    if timeout is not None:
        command.timeout = timeout
    command.save(force_insert=True)
    return command


def request_fingerprint(device_id, name, params, ttl, timeout):
    """What a command request asks for, as a key's first use recorded it."""
    asked = orjson.dumps([device_id, name, params, ttl, timeout], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(asked).hexdigest()


def create_command_once(key, device_id, user, name, params, ttl, timeout):
    """(command, created): the command the user's earlier request with this Idempotency-Key
    made, or a new one recorded under the key. Raises KeyReused if the key's first request
    asked for something else. Requests racing with one key make one command: the loser's
    insert of the key fails on its unique index (on PostgreSQL it waits for the winner's
    commit), its transaction takes its command back, and it returns the winner's."""
    fingerprint = request_fingerprint(device_id, name, params, ttl, timeout)
    now = timezone.now()
    # Cheap: one indexed DELETE that seldom finds anything. Only requests with a key add
    # rows, and each prunes, so the table holds about a day of them.
    IdempotencyKey.objects.filter(created__lt=now - IDEMPOTENCY_KEY_RETENTION).delete()
    earlier = _earlier_request(user, key, fingerprint)
    if earlier is not None:
        return earlier, False
    try:
        with transaction.atomic():
            command = create_command(device_id, user, name, params, ttl, timeout)
            IdempotencyKey.objects.create(user=user, key=key, fingerprint=fingerprint, command=command, created=now)
    except IntegrityError:
        earlier = _earlier_request(user, key, fingerprint)
        if earlier is None:
            raise  # not the key: the device went, say
        return earlier, False
    return command, True


def _earlier_request(user, key, fingerprint):
    found = IdempotencyKey.objects.select_related("command").filter(user=user, key=key).first()
    if found is None:
        return None
    if found.fingerprint != fingerprint:
        raise KeyReused(
            f"this Idempotency-Key was used for another request (command {found.command_id}); "
            "use a new key for a new request"
        )
    return found.command


def claim_for_sending(command_id, now):
    """The command, now marked sent, if it was pending, unexpired and its device is online.
    Its answer is due within its timeout. Of any number of bridges claiming one command at
    once, exactly one gets it: only that one hands it to the broker. A claim is never undone:
    once claimed, a command is never claimed again, even if its publish waits for a
    reconnection (bridge.Bridge.dispatch_command)."""
    command = Command.objects.filter(pk=command_id, status=Status.PENDING, expires_at__gt=now, device__online=True).first()
    if command is None:
        return None
    answer_by = now + timedelta(seconds=command.timeout)
    # No join in the UPDATE: each condition is checked again on the row it changes.
    claimed = Command.objects.filter(pk=command_id, status=Status.PENDING, expires_at__gt=now).update(
        status=Status.SENT, sent_at=now, answer_by=answer_by
    )
    if not claimed:
        return None
    command.status, command.sent_at, command.answer_by = Status.SENT, now, answer_by
    return command


def fail_unsendable(command_id, error, now):
    """Marks failed a claimed command the hub cannot encode (stored before its params were
    checked); returns it, or None if it is no longer sent."""
    failed = Command.objects.filter(pk=command_id, status=Status.SENT).update(
        status=Status.FAILED, error=error, finished_at=now
    )
    return Command.objects.get(pk=command_id) if failed else None


def sendable_ids(now, device_id=None):
    """Pending, unexpired commands whose device is online, oldest first."""
    commands = Command.objects.filter(status=Status.PENDING, expires_at__gt=now, device__online=True)
    if device_id is not None:
        commands = commands.filter(device_id=device_id)
    return list(commands.order_by("created").values_list("pk", flat=True))


def expire_due(now):
    """Marks expired each command whose wait ran out: pending past its ttl (never sent), or
    sent and unanswered past its timeout. Returns those this call expired."""
    waits = [
        (Q(status=Status.PENDING, expires_at__lte=now), "ttl", "not sent: its device was not online within its ttl of {} s"),
        (Q(status=Status.SENT, answer_by__lte=now), "timeout", "sent, but no answer within its timeout of {} s"),
    ]
    expired = []
    for due, field, reason in waits:
        for pk, seconds in list(Command.objects.filter(due).values_list("pk", field)):
            if Command.objects.filter(due, pk=pk).update(
                status=Status.EXPIRED, finished_at=now, error=reason.format(seconds)
            ):
                expired.append(pk)
    return list(Command.objects.filter(pk__in=expired))


def record_result(device_id, answer):
    """Stores a device's answer to a command sent to it; None if it answers nothing we sent."""
    updated = Command.objects.filter(pk=answer.command_id, device_id=device_id, status=Status.SENT).update(
        status=Status.SUCCEEDED if answer.ok else Status.FAILED,
        result=answer.result,
        error=answer.error,
        finished_at=timezone.now(),
    )
    return Command.objects.get(pk=answer.command_id) if updated else None
