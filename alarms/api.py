"""The alarms API: alarm rules, and the alarms they raise with acknowledging and clearing.

Alarms are seen, and acknowledged, by whoever may watch their device; cleared by hand by
whoever may command it. Rules are seen as alarms.rules says, changed by their owner and staff.
Anything else another user's is a 404, as if it did not exist (devices.access decides)."""
from django.db.models import Prefetch
from django.shortcuts import get_object_or_404
from django.utils import timezone
from ninja import Query, Router, Status
from ninja.errors import HttpError, ValidationError

from alarms import lifecycle, rules
from alarms.models import Alarm, AlarmChange, AlarmRule, Severity
from alarms.schemas import AlarmDetailOut, AlarmOut, CommentIn, RuleIn, RuleOut, RulePatch
from alarms.serializers import alarm_json
from devices import access
from telemetry.events import to_ms

router = Router(tags=["alarms"])


def rule_json(rule, user, watched=None):
    """The rule as `user` may see it: those who may not change it see only the devices of it
    they may watch, and not its destinations. `watched`: the ids of those devices, if known."""
    fields = rules.rule_fields(rule)
    editable = rules.can_edit(user, rule)
    if not editable:
        watched = access.watchable_ids(user, fields["devices"]) if watched is None else watched
        fields["devices"] = [device_id for device_id in fields["devices"] if device_id in watched]
        fields["destinations"] = []
    return {
        **fields,
        "id": rule.pk,
        "owner": rule.owner.get_username(),
        "can_edit": editable,
        "key": fields["key"] or None,
        "op": fields["op"] or None,
        "created": to_ms(rule.created),
        "changed": to_ms(rule.changed),
    }


def visible_rule(request, rule_id):
    return get_object_or_404(rules.visible_rules(request.auth).select_related("owner"), pk=rule_id)


def editable_rule(request, rule_id):
    rule = visible_rule(request, rule_id)
    if not rules.can_edit(request.auth, rule):
        raise HttpError(403, "you may see this rule but only its owner and staff may change it")
    return rule


def refused(error):
    """A RuleError as the 400 a field that fails validation gets (hub.api.bad_request)."""
    return ValidationError([{"loc": ("body", "rule", error.field), "msg": error.problem}])


@router.get("/alarm-rules/", response=list[RuleOut], summary="The alarm rules you may see, oldest first")
def list_rules(
    request,
    device: str = Query(None, description="Only the rules that cover this device (they name it, or name none and its owner made them)."),
    after: int = Query(None, description="A rule id: only rules after it, to page on."),
    limit: int = Query(100, ge=1, le=1000),
):
    found = rules.visible_rules(request.auth)
    if device is not None:
        found = rules.rules_covering(found, get_object_or_404(access.visible_devices(request.auth), pk=device))
    if after is not None:
        found = found.filter(pk__gt=after)
    found = list(found.select_related("owner").order_by("pk")[:limit])
    named = rules.NAMED.filter(alarmrule_id__in=[rule.pk for rule in found]).values_list("device_id", flat=True)
    watched = access.watchable_ids(request.auth, set(named))
    return [rule_json(rule, request.auth, watched) for rule in found]


@router.post("/alarm-rules/", response={201: RuleOut}, summary="Make an alarm rule")
def create_rule(request, rule: RuleIn):
    """A rule names the devices it watches (ones you may command), or none: then it covers
    every device you own, now or later. A threshold rule needs `key`, `op` and `value`; a
    silence rule `seconds` (and a `key`, or any key); an offline rule `seconds`."""
    try:
        made = rules.create(request.auth, rule.dict(exclude_unset=True))
    except rules.RuleError as error:
        raise refused(error)
    except rules.TooManyRules as error:
        raise HttpError(400, str(error))
    return Status(201, rule_json(made, request.auth))


@router.get("/alarm-rules/{rule_id}/", response=RuleOut, summary="One alarm rule")
def get_rule(request, rule_id: int):
    return rule_json(visible_rule(request, rule_id), request.auth)


@router.patch("/alarm-rules/{rule_id}/", response=RuleOut, summary="Change the fields of an alarm rule the body names")
def update_rule(request, rule_id: int, rule: RulePatch):
    """Fields left out stay as they are; a change of `kind` takes the new kind's fields from
    the body alone. Alarms raised already keep the severity they were raised with."""
    found = editable_rule(request, rule_id)
    try:
        rules.update(request.auth, found, rule.dict(exclude_unset=True))
    except rules.RuleError as error:
        raise refused(error)
    return rule_json(found, request.auth)


@router.delete("/alarm-rules/{rule_id}/", response={204: None}, summary="Delete an alarm rule, and its alarms with it")
def delete_rule(request, rule_id: int):
    rules.delete(request.auth, editable_rule(request, rule_id))
    return Status(204, None)


def visible_alarms(user):
    return Alarm.objects.filter(device__in=access.visible_devices(user)).select_related("rule", "acknowledged_by")


def visible_alarm(request, alarm_id):
    return get_object_or_404(visible_alarms(request.auth), pk=alarm_id)


@router.get("/alarms/", response=list[AlarmOut], summary="Alarms on the devices you may see, newest first")
def list_alarms(
    request,
    state: Alarm.State = Query(None),
    severity: Severity = Query(None),
    device: str = Query(None, description="Only this device's alarms."),
    acknowledged: bool = Query(None),
    before: int = Query(None, description="An alarm id: only alarms raised before it, to page back."),
    limit: int = Query(100, ge=1, le=500),
):
    wanted = {"state": state, "severity": severity, "device_id": device, "acknowledged": acknowledged, "pk__lt": before}
    alarms = visible_alarms(request.auth).filter(**{name: value for name, value in wanted.items() if value is not None})
    return [alarm_json(alarm) for alarm in alarms.order_by("-pk")[:limit]]


@router.get("/alarms/{alarm_id}/", response=AlarmDetailOut, summary="One alarm, with every change to it")
def get_alarm(request, alarm_id: int):
    changes = Prefetch("changes", AlarmChange.objects.select_related("by"))
    alarm = get_object_or_404(visible_alarms(request.auth).prefetch_related(changes), pk=alarm_id)
    return {**alarm_json(alarm), "changes": [
        {"event": change.event, "by": change.by.get_username() if change.by else None, "comment": change.comment, "at": to_ms(change.at)}
        for change in alarm.changes.all()
    ]}


@router.post("/alarms/{alarm_id}/acknowledge", response={200: AlarmOut, 409: dict}, summary="Acknowledge an alarm, active or cleared")
def acknowledge(request, alarm_id: int, body: CommentIn = None):
    alarm = visible_alarm(request, alarm_id)
    done = lifecycle.acknowledge(alarm.pk, at=timezone.now(), by=request.auth, comment=body.comment if body else "")
    if done is None:
        raise HttpError(409, "acknowledged already")
    return alarm_json(done)


@router.post("/alarms/{alarm_id}/clear", response={200: AlarmOut, 409: dict}, summary="Clear an active alarm by hand")
def clear(request, alarm_id: int, body: CommentIn = None):
    """Its device's owner and staff may clear it; those who may only watch the device get a
    403. If its condition still holds, the next crossing raises a new alarm."""
    alarm = visible_alarm(request, alarm_id)
    if not access.can_command(request.auth, alarm.device_id):
        raise HttpError(403, f"you may watch {alarm.device_id} but not clear its alarms")
    done = lifecycle.clear(alarm.pk, at=timezone.now(), by=request.auth, comment=body.comment if body else "")
    if done is None:
        raise HttpError(409, "cleared already")
    return alarm_json(done)
