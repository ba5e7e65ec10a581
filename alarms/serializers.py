"""The one shape of an alarm, as the API answers it, alarm frames carry it and notifications
send it: plain JSON types, times in epoch milliseconds."""
from telemetry.events import to_ms


def alarm_json(alarm):
    """`alarm` as the API shows it. Select its rule and acknowledged_by with it."""
    return {
        "id": alarm.pk,
        "rule": {"id": alarm.rule_id, "name": alarm.rule.name},
        "device": alarm.device_id,
        "severity": alarm.severity,
        "state": alarm.state,
        "acknowledged": alarm.acknowledged,
        "acknowledged_by": alarm.acknowledged_by.get_username() if alarm.acknowledged_by else None,
        "raised_at": to_ms(alarm.raised_at),
        "cleared_at": to_ms(alarm.cleared_at),
        "count": alarm.count,
        "last_value": alarm.last_value,
    }
