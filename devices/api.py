"""The API's device management routes: a device's MQTT password, made anew or revoked, and how
long its history is kept.

Those who may command a device may manage it; those who may only watch it get a 403, anyone
else a 404, as for every other device route."""
from django.shortcuts import get_object_or_404
from ninja import Field, Router, Schema, Status
from ninja.errors import HttpError

from devices import access
from devices.credentials import issue_device_token, revoke_device_token
from devices.models import MAX_RETAIN_DAYS
from telemetry.retention import RESOLUTIONS, effective_days

router = Router(tags=["devices"])


class CredentialsOut(Schema):
    username: str
    password: str


def managed_device(request, device_id):
    device = get_object_or_404(access.visible_devices(request.auth), pk=device_id)
    if not access.can_command(request.auth, device.pk):
        raise HttpError(403, f"you may watch {device.pk} but not manage it")
    return device


@router.post(
    "/devices/{device_id}/credentials",
    response={201: CredentialsOut},
    summary="Give a device a new MQTT password (shown only now); the old one stops working within seconds",
)
def rotate_credentials(request, device_id: str):
    device = managed_device(request, device_id)
    return Status(201, {"username": device.pk, "password": issue_device_token(device)})


@router.delete(
    "/devices/{device_id}/credentials",
    response={204: None},
    summary="Revoke a device's MQTT password: the broker disconnects it within seconds",
)
def revoke_credentials(request, device_id: str):
    revoke_device_token(managed_device(request, device_id))
    return Status(204, None)


RETAIN_DAYS = Field(None, ge=0, le=MAX_RETAIN_DAYS, description="Days to keep; 0: forever; null: the hub's setting.")


class RetentionIn(Schema):
    """Only the fields sent change."""

    raw_days: int | None = RETAIN_DAYS
    minute_days: int | None = RETAIN_DAYS
    hour_days: int | None = RETAIN_DAYS

    model_config = {"extra": "forbid"}


class RetentionOut(Schema):
    raw_days: int | None = Field(description="The device's own days for raw readings; null: the hub's setting.")
    minute_days: int | None
    hour_days: int | None
    effective: dict[str, int] = Field(description="Days each resolution is kept now (0: forever).")


def retention_out(device):
    own = [getattr(device, f"retain_{resolution}_days") for resolution in RESOLUTIONS]
    return {**{f"{resolution}_days": days for resolution, days in zip(RESOLUTIONS, own)},
            "effective": dict(zip(RESOLUTIONS, effective_days(own)))}


@router.patch(
    "/devices/{device_id}/retention",
    response=RetentionOut,
    summary="Set how long a device's raw readings and 1-minute and 1-hour rollups are kept",
)
def set_retention(request, device_id: str, payload: RetentionIn):
    device = managed_device(request, device_id)
    changed = payload.model_dump(exclude_unset=True)
    for name, days in changed.items():
        setattr(device, f"retain_{name}", days)
    device.save(update_fields=[f"retain_{name}" for name in changed])
    return retention_out(device)
