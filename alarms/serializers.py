"""An alarm as the API, the live frames and the notifications show it."""
from telemetry.events import to_ms


def alarm_json(alarm):
    """`alarm` with its rule and acknowledged_by loaded (select_related), times in epoch ms."""
    return {
        "id": alarm.id,
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
