"""Alarm rules, the alarms they raise, and where notifications of them go.

An alarm belongs to one rule and one device; at most one is active per rule and device (a
partial unique constraint, so two bridges racing to raise it make one). Every change to an alarm
is kept as an AlarmChange; notifications are made from those changes and delivered, with
retries, to a rule's NotificationDestinations.
"""
from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from devices.models import Device


class Severity(models.TextChoices):
    """Worst first: Severity.values' order is the order a badge picks the worst from."""

    CRITICAL = "critical"
    MAJOR = "major"
    MINOR = "minor"
    WARNING = "warning"
    INFO = "info"


class NotificationDestination(models.Model):
    """Somewhere a user's alarm notifications go: a webhook or a list of email addresses."""

    class Kind(models.TextChoices):
        WEBHOOK = "webhook"
        EMAIL = "email"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_destinations")
    name = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    url = models.URLField(max_length=2000, blank=True, help_text="webhook: where the JSON POST goes.")
    secret = models.CharField(max_length=200, blank=True, help_text="webhook: signs each body (X-Telehub-Signature).")
    to = models.JSONField(default=list, blank=True, help_text="email: the addresses.")
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return self.name or f"{self.kind} {self.pk}"


class AlarmRule(models.Model):
    class Kind(models.TextChoices):
        THRESHOLD = "threshold", "threshold: a key's value crosses a limit"
        SILENCE = "silence", "silence: no reading (of a key, or of any) for a while"
        OFFLINE = "offline", "offline: the device is offline for a while"

    class Op(models.TextChoices):
        GT = ">"
        GE = ">="
        LT = "<"
        LE = "<="
        EQ = "=="
        NE = "!="

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="alarm_rules")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    devices = models.ManyToManyField(
        Device, blank=True, related_name="alarm_rules",
        help_text="None: every device the rule's owner owns, now or later.",
    )
    key = models.CharField(max_length=64, blank=True, help_text="threshold: required; silence: empty means any key.")
    op = models.CharField(max_length=2, choices=Op.choices, blank=True)
    value = models.FloatField(null=True, blank=True)
    clear_value = models.FloatField(
        null=True, blank=True, help_text="threshold: the alarm clears only once a reading crosses this (hysteresis)."
    )
    for_seconds = models.PositiveIntegerField(default=0, help_text="threshold: how long the condition holds before it raises.")
    seconds = models.PositiveIntegerField(null=True, blank=True, help_text="silence and offline: how long.")
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.MAJOR)
    destinations = models.ManyToManyField(NotificationDestination, blank=True, related_name="rules")
    notify_raised = models.BooleanField(default=True)
    notify_cleared = models.BooleanField(default=True)
    notify_acknowledged = models.BooleanField(default=False)
    remind_every = models.PositiveIntegerField(
        default=0, help_text="Seconds between reminders while an alarm stays active and unacknowledged; 0: none."
    )
    created = models.DateTimeField(default=timezone.now)
    changed = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return self.name


class Alarm(models.Model):
    class State(models.TextChoices):
        ACTIVE = "active"
        CLEARED = "cleared"

    rule = models.ForeignKey(AlarmRule, on_delete=models.CASCADE, related_name="alarms")
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="alarms")
    severity = models.CharField(max_length=16, choices=Severity.choices)
    state = models.CharField(max_length=16, choices=State.choices, default=State.ACTIVE)
    acknowledged = models.BooleanField(default=False)
    acknowledged_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    raised_at = models.DateTimeField(default=timezone.now)
    cleared_at = models.DateTimeField(null=True, blank=True)
    count = models.PositiveIntegerField(default=1, help_text="Crossings while active.")
    last_value = models.JSONField(null=True, blank=True)
    last_at = models.DateTimeField(default=timezone.now)
    reminded_at = models.DateTimeField(null=True, blank=True, help_text="When the last reminder was made.")

    class Meta:
        ordering = ["-raised_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "device"], condition=Q(state="active"), name="one_active_alarm_per_rule_and_device"
            )
        ]
        indexes = [models.Index(fields=["device", "state"]), models.Index(fields=["state", "raised_at"])]

    def __str__(self):
        return f"{self.rule} on {self.device_id} ({self.state})"


class AlarmChange(models.Model):
    """One change to an alarm, and who made it (nobody: the hub did)."""

    class Event(models.TextChoices):
        RAISED = "raised"
        ACKNOWLEDGED = "acknowledged"
        CLEARED = "cleared"

    alarm = models.ForeignKey(Alarm, on_delete=models.CASCADE, related_name="changes")
    event = models.CharField(max_length=16, choices=Event.choices)
    by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    comment = models.TextField(blank=True)
    at = models.DateTimeField(default=timezone.now)
    notified_at = models.DateTimeField(
        null=True, blank=True, db_index=True, help_text="When its notifications were made; empty: not yet."
    )

    class Meta:
        ordering = ["at", "id"]

    def __str__(self):
        return f"{self.event} at {self.at:%Y-%m-%d %H:%M:%S}"


class PendingCondition(models.Model):
    """A threshold rule's condition holding on a device, not yet for the rule's `for_seconds`.

    Kept in the database so that every bridge, and a restarted one, sees when it started: the
    bridge whose timer finds it due deletes it and raises the alarm, and one whose readings
    say the condition ended (a reading newer than `since`) deletes it. Both are conditional,
    so two bridges never raise twice or keep a condition that ended.
    """

    rule = models.ForeignKey(AlarmRule, on_delete=models.CASCADE, related_name="+")
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="+")
    since = models.BigIntegerField(help_text="Epoch ms of the first reading of the run that meets the condition.")
    value = models.JSONField(null=True, help_text="That reading's value.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["rule", "device"], name="one_pending_condition_per_rule_and_device")]


class Notification(models.Model):
    """One message to one destination, kept until delivered or given up on, so a restart loses
    none. A digest carries several alarm changes in one message."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed", "failed: given up after retrying"

    DIGEST = "digest"

    destination = models.ForeignKey(NotificationDestination, on_delete=models.CASCADE, related_name="notifications")
    changes = models.ManyToManyField(AlarmChange, blank=True, related_name="notifications")
    reminders = models.ManyToManyField(
        Alarm, blank=True, related_name="reminder_notifications", help_text="Alarms it reminds of."
    )
    event = models.CharField(max_length=16, help_text="raised, cleared, acknowledged, reminder, or digest.")
    body = models.JSONField(default=dict, help_text="What is sent; a digest's is written when it is first tried.")
    events = models.PositiveIntegerField(default=1, help_text="Alarm events it carries: one, or a digest's several.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    scheduled_at = models.DateTimeField(
        default=timezone.now, help_text="When it was first due: a destination gets one per digest window."
    )
    next_attempt_at = models.DateTimeField(default=timezone.now)
    created = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"]),
            models.Index(fields=["destination", "scheduled_at"]),
            models.Index(fields=["status", "created"]),
        ]


class DeliveryAttempt(models.Model):
    """One try at delivering a notification and what the other end answered: the delivery log."""

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="delivery_attempts")
    at = models.DateTimeField(default=timezone.now)
    ok = models.BooleanField()
    answer = models.CharField(max_length=500, help_text="An HTTP status and reason, or the error.")

    class Meta:
        ordering = ["-at", "-id"]
