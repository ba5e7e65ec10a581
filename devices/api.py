"""The API's device credential routes: a device's MQTT password, made anew or revoked.

Those who may command a device may manage its password; those who may only watch it get a 403,
anyone else a 404, as for every other device route."""
from django.shortcuts import get_object_or_404
from ninja import Router, Schema, Status
from ninja.errors import HttpError

from devices import access
from devices.credentials import issue_device_token, revoke_device_token

router = Router(tags=["devices"])


class CredentialsOut(Schema):
    username: str
    password: str


def managed_device(request, device_id):
    device = get_object_or_404(access.visible_devices(request.auth), pk=device_id)
    if not access.can_command(request.auth, device.pk):
        raise HttpError(403, f"you may watch {device.pk} but not manage its credentials")
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
