"""The shapes of the history API's requests and answers, which its OpenAPI schema publishes."""
from typing import Any

from django.conf import settings
from ninja import Field, Schema
from pydantic import ValidationInfo, field_validator

from devices.commands import check_params
from devices.models import COMMAND_NAME_RE

Value = bool | int | float | str


class LatestValue(Schema):
    ts: int = Field(description="Epoch milliseconds.")
    value: Value


class DeviceOut(Schema):
    id: str
    name: str
    online: bool
    last_seen: int | None = Field(description="Epoch milliseconds of the last message, if any.")
    seq: int = Field(description="Number of the device's latest readings frame on the websockets.")
    latest: dict[str, LatestValue]
    can_command: bool


class SeriesOut(Schema):
    points: list[list[Any]] = Field(description="Rows of the answer's columns, oldest first.")
    truncated: bool = Field(description="True when the range held more points than the limit: ask again from the last ts + 1.")


class ReadingsOut(Schema):
    device: str
    start: int = Field(alias="from", description="Epoch milliseconds, inclusive.")
    end: int = Field(alias="to", description="Epoch milliseconds, exclusive.")
    bucket: int | None = Field(description="Seconds per bucket, or null for raw points.")
    resolution: str = Field(
        description="What answered: raw readings, or minute or hour rollups (then from and to are widened to whole minutes or hours)."
    )
    expired_before: int | None = Field(
        description="Epoch milliseconds: this resolution's rows before it are gone (the device's retention), so the "
        "points start there; null when the whole range is kept."
    )
    columns: list[str]
    series: dict[str, SeriesOut]


class CommandIn(Schema):
    name: str = Field(pattern=rf"^{COMMAND_NAME_RE}$", examples=["reboot"])
    params: dict[str, Any] = Field(default_factory=dict)
    ttl: int = Field(
        default=settings.COMMAND_DEFAULT_TTL, ge=1, le=settings.COMMAND_MAX_TTL,
        description="Seconds the command may wait for its device to come online.",
    )
    timeout: int = Field(
        default=settings.COMMAND_DEFAULT_TIMEOUT, ge=1, le=settings.COMMAND_MAX_TIMEOUT, strict=True,
        description="Seconds the command, once sent, waits for its device's answer before it ends expired.",
    )

    @field_validator("params")
    @classmethod
    def sendable(cls, params, info: ValidationInfo):
        """What the hub can encode and a device parse (devices.commands.check_params); the
        API's JSON parser takes NaN and integers of any width."""
        check_params(info.data.get("name", ""), params)
        return params


class CommandOut(Schema):
    id: str
    device: str
    name: str
    params: dict[str, Any]
    sent_by: str | None = Field(description="The username of who sent it, kept when the user is deleted.")
    status: str = Field(
        description="pending, sent, succeeded, failed or expired (not sent within its ttl, or not answered within its timeout)."
    )
    ttl: int
    timeout: int
    created: int
    sent: int | None
    finished: int | None
    result: Any
    error: str | None
