"""How an alarm changes: raised, crossed again, acknowledged, cleared.

Each change is an UPDATE or INSERT whose condition the database checks on the row itself (and a
partial unique constraint: one active alarm per rule and device), so two bridges, a restarted
bridge or a bridge and an operator racing on one alarm make one change between them. Every
change but a repeated crossing is kept as an AlarmChange, and every change is announced to the
alarm's watchers once the transaction commits.
"""
from django.db import IntegrityError, transaction
from django.db.models import F

from alarms.live import announce
from alarms.models import Alarm, AlarmChange

ACTIVE = Alarm.State.ACTIVE


def raise_or_count(rule, device_id, *, crossings, last_value, at, last_at=None):
    """Raises `rule`'s alarm on the device, or adds `crossings` to the active one's count.
    `last_at`: when the newest crossing was, if not `at`. Returns the alarm and whether this
    call raised it."""
    last_at = at if last_at is None else last_at
    with transaction.atomic():
        if _count_crossings(rule, device_id, crossings, last_value, last_at):
            alarm = Alarm.objects.get(rule=rule, device_id=device_id, state=ACTIVE)
            transaction.on_commit(lambda: announce(alarm))
            return alarm, False
        try:
            with transaction.atomic():
                alarm = Alarm.objects.create(
                    rule=rule, device_id=device_id, severity=rule.severity, raised_at=at,
                    count=crossings, last_value=last_value, last_at=last_at,
                )
        except IntegrityError:
            # Another process raised it between our UPDATE and INSERT.
            _count_crossings(rule, device_id, crossings, last_value, last_at)
            alarm = Alarm.objects.get(rule=rule, device_id=device_id, state=ACTIVE)
            transaction.on_commit(lambda: announce(alarm))
            return alarm, False
        AlarmChange.objects.create(alarm=alarm, event=AlarmChange.Event.RAISED, at=at)
        transaction.on_commit(lambda: announce(alarm))
        return alarm, True


def _count_crossings(rule, device_id, crossings, last_value, at):
    return Alarm.objects.filter(rule=rule, device_id=device_id, state=ACTIVE).update(
        count=F("count") + crossings, last_value=last_value, last_at=at
    )


def raise_new(rule, device_id, *, at, last_at, last_value=None):
    """Raises `rule`'s alarm on the device unless one is active; never counts. For conditions
    that have a start (silence, offline: `last_at` says since when), not crossings. Returns the
    new alarm, or None."""
    try:
        with transaction.atomic():
            alarm = Alarm.objects.create(
                rule=rule, device_id=device_id, severity=rule.severity, raised_at=at,
                last_value=last_value, last_at=last_at,
            )
            AlarmChange.objects.create(alarm=alarm, event=AlarmChange.Event.RAISED, at=at)
    except IntegrityError:
        return None  # one is active: raised by another bridge, or before a restart
    transaction.on_commit(lambda: announce(alarm))
    return alarm


def clear(alarm_id, *, at, by=None, comment="", crossed_before=None):
    """Clears an active alarm, by hand (`by`) or because its condition ended. Returns the alarm,
    or None if it was not active (already cleared, by someone else or by the hub).

    `crossed_before`: clears only if its last crossing (`last_at`) is older than this, the time
    of the reading that ends it; so a reading that crossed again later, counted by another
    bridge meanwhile, keeps it active."""
    active = Alarm.objects.filter(pk=alarm_id, state=ACTIVE)
    if crossed_before is not None:
        active = active.filter(last_at__lt=crossed_before)
    with transaction.atomic():
        if not active.update(state=Alarm.State.CLEARED, cleared_at=at):
            return None
        return _changed(alarm_id, AlarmChange.Event.CLEARED, at=at, by=by, comment=comment)


def acknowledge(alarm_id, *, at, by, comment=""):
    """Marks an alarm acknowledged by `by`, active or cleared. Returns the alarm, or None if it
    was acknowledged already."""
    with transaction.atomic():
        changed = Alarm.objects.filter(pk=alarm_id, acknowledged=False).update(
            acknowledged=True, acknowledged_by=by, acknowledged_at=at
        )
        if not changed:
            return None
        return _changed(alarm_id, AlarmChange.Event.ACKNOWLEDGED, at=at, by=by, comment=comment)


def _changed(alarm_id, event, *, at, by, comment):
    alarm = Alarm.objects.select_related("rule", "acknowledged_by").get(pk=alarm_id)
    AlarmChange.objects.create(alarm=alarm, event=event, by=by, comment=comment, at=at)
    transaction.on_commit(lambda: announce(alarm))
    return alarm
