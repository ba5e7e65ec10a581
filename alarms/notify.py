"""Alarm changes and reminders turned into notifications, one per destination that asks.

Each change is claimed by a conditional update of its `notified_at` in the same transaction
that makes its notifications, so two bridges never both notify one change, and a crash between
the two makes neither. Reminders are claimed the same way, on the alarm's `reminded_at`.

Storms are coalesced per destination (HUB_NOTIFY_DIGEST_SECONDS, the window, 60 s by default):
the first event for a destination goes out at once; any further event within the window of the
last message scheduled for it waits, and all such events go together as one digest, due when
that window ends. So a destination gets at most one message per window, however many alarms
change: 1,000 devices going offline at once make one `raised` message and, a window later, one
digest of the other 999 (at most DIGEST_MAX_EVENTS a digest; more wait for the next window).
"""
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import F, Q

from alarms.models import Alarm, AlarmChange, Notification, NotificationDestination
from alarms.serializers import alarm_json

REMINDER = "reminder"
DIGEST_MAX_EVENTS = 1000
# What a rule must ask for to be notified of each change.
WANTED_BY = {
    AlarmChange.Event.RAISED: "notify_raised",
    AlarmChange.Event.CLEARED: "notify_cleared",
    AlarmChange.Event.ACKNOWLEDGED: "notify_acknowledged",
}
ALARM_RELATED = ("rule", "acknowledged_by")


def unnotified_changes(limit):
    """Ids of the oldest changes no process has made notifications for yet."""
    return list(AlarmChange.objects.filter(notified_at__isnull=True).order_by("id").values_list("id", flat=True)[:limit])


def notify_change(change_id, now, window):
    """Claims a change and makes its notifications. Returns how many destinations it went to,
    or None if another process claimed it first."""
    with transaction.atomic():
        if not AlarmChange.objects.filter(pk=change_id, notified_at__isnull=True).update(notified_at=now):
            return None
        change = AlarmChange.objects.select_related(*(f"alarm__{name}" for name in ALARM_RELATED)).get(pk=change_id)
        rule = change.alarm.rule
        if not getattr(rule, WANTED_BY[change.event]):
            return 0
        return _to_destinations(rule, change.event, change.alarm, now, window, change=change)


def due_reminders(now):
    """Ids of active, unacknowledged alarms whose rule's remind_every has passed since they were
    raised or last reminded of."""
    candidates = Alarm.objects.filter(
        state=Alarm.State.ACTIVE, acknowledged=False, rule__remind_every__gt=0
    ).values_list("id", "raised_at", "reminded_at", "rule__remind_every")
    return [
        alarm_id for alarm_id, raised_at, reminded_at, every in candidates
        if (reminded_at or raised_at) + timedelta(seconds=every) <= now
    ]


def remind(alarm_id, now, window):
    """Claims a due reminder of an alarm and makes its notifications. Returns how many
    destinations it went to, or None if it is not due any more (reminded by another process,
    acknowledged, cleared)."""
    with transaction.atomic():
        alarm = Alarm.objects.select_related(*ALARM_RELATED).filter(pk=alarm_id).first()
        if alarm is None or not alarm.rule.remind_every:
            return None
        if (alarm.reminded_at or alarm.raised_at) + timedelta(seconds=alarm.rule.remind_every) > now:
            return None
        unchanged = Q(reminded_at=alarm.reminded_at) if alarm.reminded_at else Q(reminded_at__isnull=True)
        claimed = Alarm.objects.filter(unchanged, pk=alarm_id, state=Alarm.State.ACTIVE, acknowledged=False)
        if not claimed.update(reminded_at=now):
            return None
        return _to_destinations(alarm.rule, REMINDER, alarm, now, window, reminder=alarm)


def _to_destinations(rule, event, alarm, now, window, change=None, reminder=None):
    # Only the rule owner's own destinations, whatever the rule's list holds.
    destinations = list(rule.destinations.filter(owner_id=rule.owner_id).values_list("id", flat=True))
    for destination_id in destinations:
        notification_id = _outgoing(destination_id, event, alarm, now, window)
        if change is not None:
            Notification.changes.through.objects.create(notification_id=notification_id, alarmchange_id=change.pk)
        if reminder is not None:
            Notification.reminders.through.objects.create(notification_id=notification_id, alarm_id=reminder.pk)
    return len(destinations)


def _outgoing(destination_id, event, alarm, now, window):
    """The id of the notification that carries `event` to the destination: a new message if its
    last one was scheduled a window ago or more, else the digest that waits for the window's end."""
    if connection.features.has_select_for_update:
        # Makers of one destination's notifications take turns (SQLite serialises writers anyway).
        NotificationDestination.objects.select_for_update().filter(pk=destination_id).exists()
    window = timedelta(seconds=window)
    latest = Notification.objects.filter(destination_id=destination_id).order_by("-scheduled_at", "-id").values_list(
        "id", "scheduled_at", "event"
    ).first()
    if latest is None or latest[1] + window <= now:
        return Notification.objects.create(
            destination_id=destination_id, event=event, body={"event": event, "alarm": alarm_json(alarm)},
            scheduled_at=now, next_attempt_at=now, created=now,
        ).pk
    latest_id, latest_scheduled, latest_event = latest
    # Joins the waiting digest if no try has begun and it has room. On PostgreSQL this waits for
    # a notifier claiming it at the same moment, and the claim waits for this transaction, so
    # the claim's body holds every event the digest carries.
    if latest_event == Notification.DIGEST and Notification.objects.filter(
        pk=latest_id, status=Notification.Status.PENDING, attempts=0, events__lt=DIGEST_MAX_EVENTS
    ).update(events=F("events") + 1):
        return latest_id
    due = latest_scheduled + window
    return Notification.objects.create(
        destination_id=destination_id, event=Notification.DIGEST, scheduled_at=due, next_attempt_at=due, created=now,
    ).pk


def digest_body(notification):
    """A digest's body: each event it carries, with its alarm as it stands now."""
    changes = notification.changes.select_related(*(f"alarm__{name}" for name in ALARM_RELATED)).order_by("at", "id")
    reminders = notification.reminders.select_related(*ALARM_RELATED).order_by("id")
    events = [{"event": change.event, "alarm": alarm_json(change.alarm)} for change in changes]
    events += [{"event": REMINDER, "alarm": alarm_json(alarm)} for alarm in reminders]
    return {"event": Notification.DIGEST, "events": events}
