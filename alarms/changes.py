"""The database side of evaluation: each function one small conditional change or one read,
run in the bridge's database thread (alarms.evaluate decides which, in memory)."""
import datetime

from django.db import transaction
from django.db.models import Max, Q

from alarms import lifecycle
from alarms.models import Alarm, AlarmRule, PendingCondition
from devices.models import Device
from telemetry.events import to_ms
from telemetry.models import LatestValue

ACTIVE, CLEARED = Alarm.State.ACTIVE, Alarm.State.CLEARED


def moment(ms):
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)


# Thresholds.

def raise_crossings(rule, device_id, crossings, value, ts, raised_at=None):
    """Counts `crossings` (the newest at `ts`, epoch ms, of `value`) on the rule's active alarm
    on the device, or raises one (at `raised_at`, if not `ts`). Not if an alarm of theirs was
    cleared at or after `ts` (by a newer reading, perhaps on another bridge): such crossings
    are older than the clear."""
    last_at = moment(ts)
    if Alarm.objects.filter(rule=rule, device_id=device_id, state=CLEARED, cleared_at__gte=last_at).exists():
        return None
    at = last_at if raised_at is None else moment(raised_at)
    alarm, _ = lifecycle.raise_or_count(rule, device_id, crossings=crossings, last_value=value, at=at, last_at=last_at)
    return alarm


def clear_ended(rule_id, device_id, ts):
    """Clears the rule's active alarm on the device for a reading at `ts` that ends it, unless
    it crossed again at or after `ts`. True if it cleared one."""
    alarm_id = Alarm.objects.filter(rule_id=rule_id, device_id=device_id, state=ACTIVE).values_list("pk", flat=True).first()
    if alarm_id is None:
        return False
    at = moment(ts)
    return lifecycle.clear(alarm_id, at=at, crossed_before=at) is not None


def hold_pending(rule_id, device_id, since, value):
    """Notes that the condition holds since `since` unless a note is there already; returns the
    note's `since` (another bridge's, if it was first)."""
    PendingCondition.objects.bulk_create(
        [PendingCondition(rule_id=rule_id, device_id=device_id, since=since, value=value)], ignore_conflicts=True
    )
    return PendingCondition.objects.filter(rule_id=rule_id, device_id=device_id).values_list("since", flat=True).first()


def drop_pending(rule_id, device_id, unmet_at):
    """Forgets a holding condition that a reading at `unmet_at` ended."""
    PendingCondition.objects.filter(rule_id=rule_id, device_id=device_id, since__lt=unmet_at).delete()


def raise_due(rule, device_id, since, value):
    """Raises the alarm of a condition held since `since` for the rule's for_seconds, if this
    call is the one that takes its note (two bridges' timers race for it)."""
    with transaction.atomic():
        taken, _ = PendingCondition.objects.filter(rule=rule, device_id=device_id, since=since).delete()
        if taken:
            return raise_crossings(rule, device_id, 1, value, since, raised_at=since + rule.for_seconds * 1000)
    return None


def threshold_state():
    """({(rule id, device id): (alarm id, last_at ms)} of active threshold alarms,
    {(rule id, device id): (since, value)} of pending conditions): a few rows, read often."""
    active = {
        (rule_id, device_id): (alarm_id, to_ms(last_at))
        for alarm_id, rule_id, device_id, last_at in Alarm.objects.filter(state=ACTIVE, rule__kind=AlarmRule.Kind.THRESHOLD)
        .values_list("pk", "rule_id", "device_id", "last_at")
    }
    pending = {
        (rule_id, device_id): (since, value)
        for rule_id, device_id, since, value in PendingCondition.objects.values_list("rule_id", "device_id", "since", "value")
    }
    return active, pending


# Silence and offline.

def check_timed(rules, now):
    """Raises the silence and offline alarms whose time has come, and clears those whose
    device spoke again or came back. Returns the alarms raised and cleared, for the log."""
    raised = cleared = 0
    for rule in rules:
        silent = _quiet_since(rule, now)
        if not silent:
            continue
        # One alarm per quiet spell: the spell's start is the alarm's last_at.
        known = dict(
            Alarm.objects.filter(rule=rule, device_id__in=silent).values_list("device_id").annotate(Max("last_at"))
        )
        for device_id, since in silent.items():
            if known.get(device_id) is None or known[device_id] < since:
                raised += lifecycle.raise_new(rule, device_id, at=now, last_at=since) is not None
    by_id = {rule.id: rule for rule in rules}
    for alarm in Alarm.objects.filter(state=ACTIVE, rule_id__in=by_id).select_related("device"):
        if _back(by_id[alarm.rule_id], alarm):
            cleared += lifecycle.clear(alarm.pk, at=now) is not None
    return raised, cleared


def _quiet_since(rule, now):
    """{device id: since when} of the devices in the rule's scope quiet (silent, or offline)
    for its seconds: since their last reading (of its key, if it has one) or last status, or
    else since they were registered."""
    cutoff = now - datetime.timedelta(seconds=rule.seconds)
    devices = Device.objects.filter(_scope(rule))
    if rule.kind == AlarmRule.Kind.SILENCE and rule.key:
        latest = dict(
            LatestValue.objects.filter(_scope(rule, "device__"), key=rule.key).values_list("device_id", "ts")
        )
        quiet = {}
        for device_id, created in devices.values_list("pk", "created"):
            since = moment(latest[device_id]) if device_id in latest else created
            if since < cutoff:
                quiet[device_id] = since
        return quiet
    if rule.kind == AlarmRule.Kind.OFFLINE:
        devices = devices.filter(online=False)
    devices = devices.filter(Q(last_seen__lt=cutoff) | Q(last_seen=None, created__lt=cutoff))
    return {device_id: last_seen or created for device_id, last_seen, created in devices.values_list("pk", "last_seen", "created")}


def _back(rule, alarm):
    """Whether the device of a silence or offline alarm has spoken or come back since."""
    device = alarm.device
    if rule.kind == AlarmRule.Kind.OFFLINE:
        return device.online
    if rule.key:
        ts = LatestValue.objects.filter(device=device, key=rule.key).values_list("ts", flat=True).first()
        return ts is not None and ts > to_ms(alarm.last_at)
    return device.last_seen is not None and device.last_seen > alarm.last_at


def _scope(rule, prefix=""):
    """The rule's devices: those it names, or else its owner's."""
    if rule.named_devices:
        return Q(**{f"{prefix}pk__in": rule.device_ids})
    return Q(**{f"{prefix}owner_id": rule.owner_id})

