"""The database side of evaluation: each function one small conditional change or one read,
run in the bridge's database thread (alarms.evaluate decides which, in memory)."""
import datetime
from collections import defaultdict

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
    device spoke again or came back: a few queries a pass, however many rules (TimedState).
    Returns the alarms raised and cleared, for the log."""
    state = TimedState(rules)
    raised = cleared = 0
    for rule in rules:
        for device_id, since in state.quiet_since(rule, now).items():
            # One alarm per quiet spell: the spell's start is the alarm's last_at.
            known = state.last_at.get((rule.id, device_id))
            if known is None or known < since:
                raised += lifecycle.raise_new(rule, device_id, at=now, last_at=since) is not None
    by_id = {rule.id: rule for rule in rules}
    for alarm_id, rule_id, device_id, last_at in state.active:
        if state.back(by_id[rule_id], device_id, last_at):
            cleared += lifecycle.clear(alarm_id, at=now) is not None
    return raised, cleared


class TimedState:
    """What the silence and offline rules are judged on, read at once for all of them: their
    devices as they are now (those a rule names, or else its owner's) and those of their active
    alarms, the newest value of each key they watch, and the newest alarm of each rule and
    device."""

    def __init__(self, rules):
        rule_ids = [rule.id for rule in rules]
        self.active = list(
            Alarm.objects.filter(state=ACTIVE, rule_id__in=rule_ids).values_list("pk", "rule_id", "device_id", "last_at")
        )
        named = set().union(*(rule.device_ids for rule in rules if rule.named_devices))
        named.update(device_id for _, _, device_id, _ in self.active)
        owners = {rule.owner_id for rule in rules if not rule.named_devices}
        self.devices = {}  # device id -> (created, last_seen, online)
        self.owned = defaultdict(list)  # owner id -> device ids, of the owners of rules with no devices named
        scope = Q(pk__in=named) | Q(owner_id__in=owners)
        for device_id, owner_id, *figures in Device.objects.filter(scope).values_list(
                "pk", "owner_id", "created", "last_seen", "online"):
            self.devices[device_id] = figures
            if owner_id in owners:
                self.owned[owner_id].append(device_id)
        keys = {rule.key for rule in rules if rule.kind == AlarmRule.Kind.SILENCE and rule.key}
        self.latest = {
            (device_id, key): ts
            for device_id, key, ts in LatestValue.objects.filter(Q(device_id__in=named) | Q(device__owner_id__in=owners),
                                                                 key__in=keys)
            .values_list("device_id", "key", "ts")
        } if keys else {}
        self.last_at = {
            (rule_id, device_id): last_at
            for rule_id, device_id, last_at in Alarm.objects.filter(rule_id__in=rule_ids)
            .values_list("rule_id", "device_id").annotate(Max("last_at"))
        }

    def quiet_since(self, rule, now):
        """{device id: since when} of the devices in the rule's scope quiet (silent, or offline)
        for its seconds: since their last reading (of its key, if it has one) or last status,
        or else since they were registered."""
        cutoff = now - datetime.timedelta(seconds=rule.seconds)
        quiet = {}
        for device_id in rule.device_ids if rule.named_devices else self.owned[rule.owner_id]:
            if device_id not in self.devices:
                continue  # deleted since the rules were loaded
            created, last_seen, online = self.devices[device_id]
            if rule.kind == AlarmRule.Kind.SILENCE and rule.key:
                ts = self.latest.get((device_id, rule.key))
                since = created if ts is None else moment(ts)
            elif rule.kind == AlarmRule.Kind.OFFLINE and online:
                continue
            else:
                since = last_seen or created
            if since < cutoff:
                quiet[device_id] = since
        return quiet

    def back(self, rule, device_id, last_at):
        """Whether the device of a silence or offline alarm quiet since `last_at` has spoken or
        come back since."""
        if device_id not in self.devices:
            return False
        _, last_seen, online = self.devices[device_id]
        if rule.kind == AlarmRule.Kind.OFFLINE:
            return online
        if rule.key:
            ts = self.latest.get((device_id, rule.key))
            return ts is not None and ts > to_ms(last_at)
        return last_seen is not None and last_seen > last_at
