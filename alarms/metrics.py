"""Notification tries, counted by the bridge that makes them (served with the bridge's metrics)."""
from prometheus_client import Counter

NOTIFICATIONS = Counter(
    "telehub_alarm_notification_tries", "Tries at delivering an alarm notification, by outcome: sent, retry "
    "(failed, to be tried again) or failed (given up).", ["outcome"],
)
for outcome in ("sent", "retry", "failed"):
    NOTIFICATIONS.labels(outcome)
