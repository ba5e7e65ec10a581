"""The shapes of the alarms API's requests and answers, and the bounds on what comes in.

Field by field checks are pydantic's; what a rule needs for its kind is checked by
alarms.rules on the rule as it would be stored, so a PATCH is held to the same rules."""
import re
from typing import Any

from ninja import Field, Schema
from pydantic import ConfigDict, field_validator

from alarms.models import Alarm, AlarmRule, Severity
from devices.models import DEVICE_ID_RE

# Bounds on a user's rules. A rule that names no devices covers all of its owner's, so a rule
# per device is never needed: a thousand rules is room for a thousand distinct conditions.
MAX_RULES_PER_USER = 1000
MAX_RULE_DEVICES = 1000
MAX_RULE_DESTINATIONS = 20
MAX_NAME_CHARS = AlarmRule._meta.get_field("name").max_length
MAX_COMMENT_CHARS = 1000
MAX_SECONDS = 7 * 86400  # silence, offline, for_seconds and reminders: at most a week
KEY_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"  # a reading's key, as bridge.protocol takes it
DEVICE_ID = re.compile(rf"{DEVICE_ID_RE}\Z")


def _no_nul(text):
    if text is not None and "\x00" in text:
        raise ValueError("must not hold a NUL character (\\u0000)")
    return text


class RulePatch(Schema):
    """A rule's fields, each optional: a PATCH changes those it names (null clears one). A
    field of no rule (a misspelt one) is refused, not ignored."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=MAX_NAME_CHARS)
    kind: AlarmRule.Kind | None = None
    devices: list[str] | None = Field(
        None, max_length=MAX_RULE_DEVICES, description="Device ids; empty: every device the rule's owner owns, now or later."
    )
    key: str | None = Field(None, pattern=KEY_PATTERN)
    op: AlarmRule.Op | None = None
    value: float | None = Field(None, strict=True, allow_inf_nan=False)
    clear_value: float | None = Field(None, strict=True, allow_inf_nan=False)
    for_seconds: int | None = Field(None, ge=0, le=MAX_SECONDS, strict=True)
    seconds: int | None = Field(None, ge=1, le=MAX_SECONDS, strict=True)
    severity: Severity | None = None
    destinations: list[int] | None = Field(None, max_length=MAX_RULE_DESTINATIONS)
    notify_raised: bool | None = None
    notify_cleared: bool | None = None
    notify_acknowledged: bool | None = None
    remind_every: int | None = Field(None, ge=0, le=MAX_SECONDS, strict=True)

    @field_validator("name")
    @classmethod
    def printable(cls, name):
        return _no_nul(name)

    @field_validator("devices")
    @classmethod
    def device_ids(cls, devices):
        for device_id in devices or ():
            if not DEVICE_ID.match(device_id):
                raise ValueError(f"{device_id[:70]!r} is not a device id")
        return list(dict.fromkeys(devices)) if devices is not None else None


class RuleIn(RulePatch):
    name: str = Field(min_length=1, max_length=MAX_NAME_CHARS, examples=["Boiler too hot"])
    kind: AlarmRule.Kind


class RuleOut(Schema):
    id: int
    name: str
    owner: str = Field(description="The username of the rule's owner; a rule naming no devices covers theirs.")
    can_edit: bool
    kind: str
    devices: list[str]
    key: str | None
    op: str | None
    value: float | None
    clear_value: float | None
    for_seconds: int
    seconds: int | None
    severity: str
    destinations: list[int]
    notify_raised: bool
    notify_cleared: bool
    notify_acknowledged: bool
    remind_every: int
    created: int
    changed: int


class RuleRef(Schema):
    id: int
    name: str


class AlarmOut(Schema):
    id: int
    rule: RuleRef
    device: str
    severity: Severity
    state: Alarm.State
    acknowledged: bool
    acknowledged_by: str | None
    raised_at: int = Field(description="Epoch milliseconds.")
    cleared_at: int | None
    count: int = Field(description="Crossings while active.")
    last_value: Any


class ChangeOut(Schema):
    event: str
    by: str | None = Field(description="Who made the change; null: the hub did.")
    comment: str
    at: int


class AlarmDetailOut(AlarmOut):
    changes: list[ChangeOut] = Field(description="The alarm's history, oldest first.")


class CommentIn(Schema):
    comment: str = Field("", max_length=MAX_COMMENT_CHARS)

    @field_validator("comment")
    @classmethod
    def printable(cls, comment):
        return _no_nul(comment)

