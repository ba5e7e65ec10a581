"""Who may see and change which alarm rule, and what a rule must hold for its kind.

A rule is seen by its owner, staff, and whoever may watch a device it covers: one it names,
or, if it names none, one its owner owns. It is changed by its owner and staff only. The
devices it names must be ones the user may command, its destinations its owner's own.
devices.access decides who may watch and command a device; this module only asks it.
"""
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from alarms import lifecycle
from alarms.models import Alarm, AlarmRule, NotificationDestination
from alarms.schemas import MAX_RULES_PER_USER
from devices import access

Kind = AlarmRule.Kind
NAMED = AlarmRule.devices.through.objects  # (rule, device) rows

# The fields each kind takes beyond those every rule has, and those it needs.
KIND_FIELDS = {
    Kind.THRESHOLD: ("key", "op", "value", "clear_value", "for_seconds"),
    Kind.SILENCE: ("key", "seconds"),
    Kind.OFFLINE: ("seconds",),
}
REQUIRED = {Kind.THRESHOLD: ("key", "op", "value"), Kind.SILENCE: ("seconds",), Kind.OFFLINE: ("seconds",)}
UNSET = {"key": "", "op": "", "value": None, "clear_value": None, "for_seconds": 0, "seconds": None}
# clear_value must lie on the side of `value` where the condition no longer holds.
CLEARS_BELOW = {AlarmRule.Op.GT, AlarmRule.Op.GE}
CLEARS_ABOVE = {AlarmRule.Op.LT, AlarmRule.Op.LE}


class RuleError(Exception):
    """A rule that cannot be: `field` names what is wrong."""

    def __init__(self, field, problem):
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class TooManyRules(Exception):
    pass


def _names_none():
    return ~Exists(NAMED.filter(alarmrule_id=OuterRef("pk")))


def visible_rules(user):
    """The rules `user` may see."""
    if not user.is_authenticated or not user.is_active:
        return AlarmRule.objects.none()
    if user.is_staff:
        return AlarmRule.objects.all()
    watched = access.visible_devices(user)
    return AlarmRule.objects.filter(
        Q(owner=user)
        | Q(pk__in=NAMED.filter(device__in=watched).values("alarmrule_id"))
        | (Q(owner__in=watched.values("owner_id")) & _names_none())
    )


def rules_covering(rules, device):
    """Those of `rules` that cover `device`: they name it, or name none and its owner made them."""
    return rules.filter(
        Q(pk__in=NAMED.filter(device=device).values("alarmrule_id")) | (Q(owner_id=device.owner_id) & _names_none())
    )


def can_edit(user, rule):
    return user.is_active and (user.is_staff or rule.owner_id == user.pk)


FIELDS = (
    "name", "kind", "key", "op", "value", "clear_value", "for_seconds", "seconds", "severity",
    "notify_raised", "notify_cleared", "notify_acknowledged", "remind_every",
)
NOT_NULL = ("name", "kind", "severity", "notify_raised", "notify_cleared", "notify_acknowledged", "remind_every")


def new_rule_fields():
    """A new rule's fields before a POST's body: the model's defaults."""
    fields = {name: AlarmRule._meta.get_field(name).get_default() for name in FIELDS}
    return {**fields, "devices": [], "destinations": []}


def rule_fields(rule):
    """A stored rule's fields, as a body names them."""
    fields = {name: getattr(rule, name) for name in FIELDS}
    fields["devices"] = list(rule.devices.values_list("pk", flat=True))
    fields["destinations"] = list(rule.destinations.values_list("pk", flat=True))
    return fields


def merged(fields, changes):
    """`fields` with a body's `changes`. A change of kind starts the kind's own fields afresh:
    they are the body's, not what the rule held for its old kind."""
    if changes.get("kind", fields["kind"]) != fields["kind"]:
        fields = {**fields, **UNSET}
    return {**fields, **changes}


def checked(fields, user, owner):
    """`fields` as they are stored, or RuleError naming what is wrong. `user` names the devices
    (they must be ones they may command), `owner` owns the rule (the destinations are theirs)."""
    for name in NOT_NULL:
        if fields[name] is None:
            raise RuleError(name, "must not be null")
    kind = Kind(fields["kind"])
    for name in REQUIRED[kind]:
        if fields[name] in (None, ""):
            raise RuleError(name, f"required for a {kind.value} rule")
    for name, unset in UNSET.items():
        if name not in KIND_FIELDS[kind] and fields[name] not in (None, unset):
            raise RuleError(name, f"a {kind.value} rule takes no {name}")
    _check_clear_value(fields["op"], fields["value"], fields["clear_value"])
    devices = fields["devices"] or []
    allowed = set(access.commandable_devices(user).filter(pk__in=devices).values_list("pk", flat=True))
    for device_id in devices:
        if device_id not in allowed:
            raise RuleError("devices", f"no device {device_id!r} that you may make rules for")
    destinations = fields["destinations"] or []
    theirs = set(NotificationDestination.objects.filter(owner=owner, pk__in=destinations).values_list("pk", flat=True))
    for destination_id in destinations:
        if destination_id not in theirs:
            raise RuleError("destinations", f"no notification destination {destination_id} of the rule's owner")
    stored = {**fields, "devices": devices, "destinations": destinations}
    stored.update({name: unset for name, unset in UNSET.items() if stored[name] is None})
    return stored


def _check_clear_value(op, value, clear_value):
    if clear_value is None:
        return
    if op in CLEARS_BELOW and clear_value > value:
        raise RuleError("clear_value", f"must not be above value: the alarm of {op} {value} clears at or below it")
    if op in CLEARS_ABOVE and clear_value < value:
        raise RuleError("clear_value", f"must not be below value: the alarm of {op} {value} clears at or above it")
    if op not in CLEARS_BELOW | CLEARS_ABOVE:
        raise RuleError("clear_value", f"goes with an op of >, >=, < or <=, not {op}")


def create(user, changes):
    """A new rule of `user`'s from a body's fields; TooManyRules when they have
    MAX_RULES_PER_USER already."""
    fields = checked(merged(new_rule_fields(), changes), user, user)
    with transaction.atomic():
        # Lock the owner's row: two requests at once cannot both take the last place.
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()
        if AlarmRule.objects.filter(owner=user).count() >= MAX_RULES_PER_USER:
            raise TooManyRules(f"you have {MAX_RULES_PER_USER} alarm rules, the most one user may have")
        rule = AlarmRule(owner=user)
        _save(rule, fields)
    return rule


def update(user, rule, changes):
    """Changes the fields a PATCH's body names."""
    fields = checked(merged(rule_fields(rule), changes), user, rule.owner)
    with transaction.atomic():
        _save(rule, fields)
    return rule


def _save(rule, fields):
    for name, value in fields.items():
        if name not in ("devices", "destinations"):
            setattr(rule, name, value)
    rule.changed = timezone.now()
    rule.save()
    rule.devices.set(fields["devices"])
    rule.destinations.set(fields["destinations"])


def delete(user, rule):
    """Deletes the rule and, with it, its alarms: the active ones are cleared first, so the
    pages that show them see them go."""
    now = timezone.now()
    for alarm_id in rule.alarms.filter(state=Alarm.State.ACTIVE).values_list("pk", flat=True):
        lifecycle.clear(alarm_id, at=now, by=user, comment="its rule was deleted")
    rule.delete()
