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


def raise_or_count(rule, device_id, *, crossings, last_value, at):
    """Raises `rule`'s alarm on the device, or adds `crossings` to the active one's count.
    Returns the alarm and whether this call raised it."""
    with transaction.atomic():
        if _count_crossings(rule, device_id, crossings, last_value, at):
            alarm = Alarm.objects.get(rule=rule, device_id=device_id, state=ACTIVE)
            transaction.on_commit(lambda: announce(alarm))
            return alarm, False
        try:
            with transaction.atomic():
                alarm = Alarm.objects.create(
                    rule=rule, device_id=device_id, severity=rule.severity, raised_at=at,
                    count=crossings, last_value=last_value, last_at=at,
                )
        except IntegrityError:
            # Another process raised it between our UPDATE and INSERT.
            _count_crossings(rule, device_id, crossings, last_value, at)
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


def clear(alarm_id, *, at, by=None, comment=""):
    """Clears an active alarm, by hand (`by`) or because its condition ended. Returns the alarm,
    or None if it was not active (already cleared, by someone else or by the hub)."""
    with transaction.atomic():
        if not Alarm.objects.filter(pk=alarm_id, state=ACTIVE).update(state=Alarm.State.CLEARED, cleared_at=at):
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
