import uuid
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.validators import MaxValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

# A device id is also its MQTT topic segment and its username on the broker.
DEVICE_ID_RE = r"[A-Za-z0-9_-]{1,64}"
COMMAND_NAME_RE = r"[A-Za-z0-9_.-]{1,64}"


MAX_RETAIN_DAYS = 36500


def retention_days_field(what, setting):
    return models.PositiveIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(MAX_RETAIN_DAYS)],
        help_text=f"Days to keep its {what}; 0: forever; empty: the hub's {setting}.",
    )


class Device(models.Model):
    id = models.CharField(
        primary_key=True,
        max_length=64,
        validators=[RegexValidator(rf"^{DEVICE_ID_RE}\Z", "Letters, digits, _ and - only.")],
    )
    name = models.CharField(max_length=200, blank=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="devices")
    groups = models.ManyToManyField(
        Group, blank=True, related_name="devices", help_text="Members of these groups may watch the device."
    )
    online = models.BooleanField(default=False)
    last_seen = models.DateTimeField(null=True, blank=True)
    seq = models.BigIntegerField(default=0, help_text="Readings frames published for this device so far.")
    password_hash = models.CharField(
        max_length=200, blank=True, editable=False,
        help_text="Its MQTT password, hashed as Mosquitto checks it; empty: it may not connect.",
    )
    credentials_changed = models.DateTimeField(null=True, blank=True, editable=False, db_index=True)
    created = models.DateTimeField(auto_now_add=True)
    # Retention (telemetry.retention): days each resolution is kept; empty: the hub's setting.
    retain_raw_days = retention_days_field("raw readings", "HUB_RETAIN_RAW_DAYS")
    retain_minute_days = retention_days_field("1-minute rollups", "HUB_RETAIN_MINUTE_DAYS")
    retain_hour_days = retention_days_field("1-hour rollups", "HUB_RETAIN_HOUR_DAYS")

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return self.name or self.id

    @property
    def can_connect(self):
        return bool(self.password_hash)


class BrokerAccount(models.Model):
    """A broker login of the hub's own: a bridge, or a trusted gateway that publishes for many
    devices. Usernames hold a dot, so they can never be a device id."""

    class Role(models.TextChoices):
        BRIDGE = "bridge", "bridge: reads every device's messages, sends every device's commands"
        GATEWAY = "gateway", "gateway: publishes telemetry and status for every device"

    username = models.CharField(
        max_length=64,
        unique=True,
        validators=[RegexValidator(r"^[A-Za-z0-9_-]*\.[A-Za-z0-9_.-]*\Z", "Letters, digits, _, - and at least one dot.")],
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    password_hash = models.CharField(max_length=200, editable=False)
    changed = models.DateTimeField(default=timezone.now, editable=False, db_index=True)

    class Meta:
        ordering = ["username"]

    def __str__(self):
        return f"{self.username} ({self.role})"


def default_command_timeout():
    return settings.COMMAND_DEFAULT_TIMEOUT


class Command(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        EXPIRED = "expired"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="commands")
    name = models.CharField(max_length=64)
    params = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    created_by_name = models.CharField(
        max_length=150, blank=True, editable=False, verbose_name="sent by", help_text="The sender's username, kept when the user is deleted."
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    ttl = models.PositiveIntegerField(help_text="Seconds the command may wait for its device to come online.")
    timeout = models.PositiveIntegerField(
        default=default_command_timeout, help_text="Seconds a sent command waits for its device's answer."
    )
    created = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    answer_by = models.DateTimeField(null=True, blank=True, help_text="Sent and unanswered by then: expired.")
    finished_at = models.DateTimeField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created"]
        indexes = [
            models.Index(fields=["status", "expires_at"]),
            models.Index(fields=["status", "answer_by"]),
            models.Index(fields=["device", "status"]),
        ]

    def save(self, *args, **kwargs):
        if self.expires_at is None:
            self.expires_at = self.created + timedelta(seconds=self.ttl)
        super().save(*args, **kwargs)

    def __str__(self):
        return f"{self.name} to {self.device_id} ({self.status})"


class IdempotencyKey(models.Model):
    """The command a user's request with an Idempotency-Key header made: a retry with the same
    key gets that command instead of a second one. Kept for devices.commands.IDEMPOTENCY_KEY_RETENTION."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(
        max_length=64, help_text="What the request asked for (devices.commands.request_fingerprint)."
    )
    command = models.ForeignKey(Command, on_delete=models.CASCADE, related_name="+")
    created = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="one_command_per_user_and_key")]

    def __str__(self):
        return f"{self.key} of user {self.user_id}"
