"""An alarm as the API, the live frames and notifications show it: the one shape of it."""
from telemetry.events import to_ms


def alarm_json(alarm):
    """`alarm` as plain JSON types, times in epoch milliseconds. Reads `alarm.rule` and
    `alarm.acknowledged_by`: select_related them when serializing many."""
    acknowledged_by = alarm.acknowledged_by
    return {
        "id": alarm.pk,
        "rule": {"id": alarm.rule_id, "name": alarm.rule.name},
        "device": alarm.device_id,
        "severity": alarm.severity,
        "state": alarm.state,
        "acknowledged": alarm.acknowledged,
        "acknowledged_by": acknowledged_by.get_username() if acknowledged_by is not None else None,
        "raised_at": to_ms(alarm.raised_at),
        "cleared_at": to_ms(alarm.cleared_at),
        "count": alarm.count,
        "last_value": alarm.last_value,
    }
