"""The alarm rules as the bridge holds them: loaded at once, looked up per device in memory,
and loaded again when they change."""
from collections import defaultdict
from dataclasses import dataclass, field

from django.db.models import Count, Max

from alarms.conditions import Threshold
from alarms.models import AlarmRule
from devices.models import Device


@dataclass
class Rules:
    version: tuple = ()
    by_id: dict = field(default_factory=dict)  # rule id -> AlarmRule (to raise its alarms)
    thresholds: dict = field(default_factory=dict)  # device id -> [Threshold] that apply to it
    timed: list = field(default_factory=list)  # silence and offline AlarmRules, `device_ids` set on each


def rules_version():
    """Changes whenever a rule, a rule's devices (the API sets `changed`) or the set of devices
    does: rules with no devices of their own cover devices registered later."""
    rules = AlarmRule.objects.aggregate(count=Count("id"), last=Max("id"), changed=Max("changed"))
    devices = Device.objects.aggregate(count=Count("id"), created=Max("created"))
    return (rules["count"], rules["last"], rules["changed"], devices["count"], devices["created"])


def load_rules():
    """Every rule, with the devices each covers."""
    version = rules_version()
    rules = list(AlarmRule.objects.all())
    named = defaultdict(set)
    for rule_id, device_id in AlarmRule.devices.through.objects.values_list("alarmrule_id", "device_id"):
        named[rule_id].add(device_id)
    unscoped_owners = {rule.owner_id for rule in rules if not named[rule.id]}
    owned = defaultdict(set)
    for device_id, owner_id in Device.objects.filter(owner_id__in=unscoped_owners).values_list("id", "owner_id"):
        owned[owner_id].add(device_id)
    loaded = Rules(version=version)
    thresholds = defaultdict(list)
    for rule in rules:
        rule.named_devices = bool(named[rule.id])
        rule.device_ids = named[rule.id] or owned[rule.owner_id]
        loaded.by_id[rule.id] = rule
        if rule.kind == AlarmRule.Kind.THRESHOLD:
            if not rule.key or rule.op not in dict(AlarmRule.Op.choices) or rule.value is None:
                continue  # not a usable rule (the API refuses such); nothing to evaluate
            threshold = Threshold(rule.id, rule.key, rule.op, rule.value, rule.clear_value, rule.for_seconds)
            for device_id in rule.device_ids:
                thresholds[device_id].append(threshold)
        elif rule.seconds is not None:
            loaded.timed.append(rule)
    loaded.thresholds = dict(thresholds)
    return loaded
