"""The history API behind the dashboard pages: devices, their readings over time, commands.

Every route looks devices up among those the caller may see, so another user's device is a
404, as if it did not exist. History and lists are read from settings.READ_DATABASE (a replica,
when there is one); single objects, and who may see what, from the primary, so a command just
sent is there at once."""
import csv
import re
import time
import uuid
from datetime import datetime, timezone

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from ninja import Query, Router, Status
from ninja.errors import HttpError

from devices import access
from devices.commands import IDEMPOTENCY_KEY_RE, KeyReused, create_command, create_command_once
from devices.models import Command
from telemetry import history, retention
from telemetry.announce import announce_command
from telemetry.events import command_frame, snapshot_frame
from telemetry.schemas import CommandIn, CommandOut, DeviceOut, ReadingsOut

router = Router()

DEFAULT_SPAN_MS = 15 * 60 * 1000
MAX_KEYS = 20
KEY_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")
IDEMPOTENCY_KEY = re.compile(rf"{IDEMPOTENCY_KEY_RE}\Z")


def device_out(device, commandable_ids):
    snapshot = snapshot_frame(device, device.latest_values.all())
    return {**snapshot, "id": device.pk, "can_command": device.pk in commandable_ids}


def visible_device(request, device_id):
    return get_object_or_404(access.visible_devices(request.auth), pk=device_id)


@router.get("/devices/", response=list[DeviceOut], summary="The devices you may see")
def list_devices(request):
    devices = access.visible_devices_on(settings.READ_DATABASE, request.auth)
    devices = devices.prefetch_related("latest_values").order_by("pk")
    commandable = set(access.commandable_devices(request.auth).values_list("pk", flat=True))
    return [device_out(device, commandable) for device in devices]


@router.get("/devices/{device_id}/", response=DeviceOut, summary="One device")
def get_device(request, device_id: str):
    device = visible_device(request, device_id)
    commandable = {device.pk} if access.can_command(request.auth, device.pk) else set()
    return device_out(device, commandable)


@router.get("/devices/{device_id}/readings", response=ReadingsOut, by_alias=True, summary="A device's readings over time")
def readings(
    request,
    device_id: str,
    key_names: str = Query(None, alias="keys", description="Comma-separated keys; all of the device's keys if left out."),
    start: int = Query(None, alias="from", description="Epoch milliseconds, inclusive; 15 minutes before `to` by default."),
    end: int = Query(None, alias="to", description="Epoch milliseconds, exclusive; now by default."),
    bucket: int = Query(
        None, ge=1, description="Seconds per bucket: min, mean and max per bucket instead of raw points. Whole "
        "hours are answered from the 1-hour rollups, whole minutes from the 1-minute ones, other widths from raw rows.",
    ),
    format: str = Query("json", pattern="^(json|csv)$", description="json, or csv to download."),
):
    device = visible_device(request, device_id)
    now = int(time.time() * 1000)
    end = now + 1 if end is None else end
    start = end - DEFAULT_SPAN_MS if start is None else start
    if start >= end:
        raise HttpError(400, "from must be before to")
    key_list = parse_keys(key_names) if key_names else history.device_keys(device)
    resolution = history.resolution_for(bucket)
    start, end = history.whole_units(start, end, resolution)
    expired_before = getattr(retention.device_cutoffs(device, now), resolution)
    if expired_before is None or expired_before <= start:
        expired_before = None
    kept_from = start if expired_before is None else min(expired_before, end)
    limit = settings.API_MAX_POINTS
    try:
        if bucket is None:
            series = history.raw_series(device, key_list, kept_from, end, limit)
        else:
            history.check_bucket_count(start, end, bucket, limit)
            series = history.bucketed_series(device, key_list, kept_from, end, bucket, resolution)
    except history.RangeError as exc:
        raise HttpError(400, str(exc))
    columns = history.RAW_COLUMNS if bucket is None else history.BUCKET_COLUMNS
    if format == "csv":
        response = csv_response(device.pk, columns, series)
        response["X-Resolution"] = resolution
        if expired_before is not None:
            response["X-Expired-Before"] = str(expired_before)
        return response
    return {
        "device": device.pk, "from": start, "to": end, "bucket": bucket, "resolution": resolution,
        "expired_before": expired_before, "columns": list(columns),
        "series": {item.key: {"points": item.points, "truncated": item.truncated} for item in series},
    }


def parse_keys(keys):
    key_list = list(dict.fromkeys(key.strip() for key in keys.split(",") if key.strip()))
    bad = [key for key in key_list if not KEY_RE.match(key)]
    if bad:
        raise HttpError(400, f"not a key: {bad[0][:70]!r}")
    if not key_list or len(key_list) > MAX_KEYS:
        raise HttpError(400, f"ask for 1 to {MAX_KEYS} keys")
    return key_list


# A cell starting with one of these is a formula to a spreadsheet (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_text(cell):
    """A string cell as a spreadsheet shows it, never runs it: one that starts like a formula
    gets a leading single quote. Numbers and booleans stay as they are."""
    if isinstance(cell, str) and cell.startswith(FORMULA_STARTS):
        return "'" + cell
    return cell


def csv_response(device_id, columns, series):
    """The series as CSV: every text cell quoted, numbers bare, so a number stays a number."""
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{device_id}-readings.csv"'
    writer = csv.writer(response, quoting=csv.QUOTE_NONNUMERIC)
    writer.writerow(["device", "key", *columns])
    for item in series:
        writer.writerows([spreadsheet_text(cell) for cell in (device_id, item.key, *point)] for point in item.points)
    return response


@router.get("/devices/{device_id}/commands/", response=list[CommandOut], summary="A device's commands, newest first")
def list_commands(request, device_id: str, limit: int = Query(50, ge=1, le=500)):
    device = visible_device(request, device_id)
    commands = Command.objects.using(settings.READ_DATABASE).filter(device_id=device.pk)
    return [command_frame(command) for command in commands.order_by("-created")[:limit]]


IDEMPOTENCY_KEY_HEADER = {
    "in": "header", "name": "Idempotency-Key", "required": False,
    "description": "Makes retries safe: the same key again within 24 hours gets the first command.",
    "schema": {"type": "string", "pattern": f"^{IDEMPOTENCY_KEY_RE}$"},
}


@router.post(
    "/devices/{device_id}/commands/", response={201: CommandOut}, summary="Send a command to a device",
    openapi_extra={
        "parameters": [IDEMPOTENCY_KEY_HEADER],
        "responses": {422: {"description": "The Idempotency-Key was used for another request."}},
    },
)
def send_command(request, device_id: str, payload: CommandIn):
    """The command waits while the device is offline, for at most `ttl` seconds, then once
    sent waits `timeout` seconds for its answer; its status moves on as the websockets show
    (pending, sent, succeeded, failed or expired).

    With an `Idempotency-Key` header (1 to 255 printable ASCII characters, no spaces), a retry
    of the request with the same key within 24 hours gets the command the first one made
    (201, the command as it is now) and makes no second; the same key with another request
    is a 422."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and not IDEMPOTENCY_KEY.match(key):
        raise HttpError(400, "an Idempotency-Key is 1 to 255 printable ASCII characters, without spaces")
    device = visible_device(request, device_id)
    if not access.can_command(request.auth, device.pk):
        raise HttpError(403, f"you may watch {device.pk} but not command it")
    asked = (device.pk, request.auth, payload.name, payload.params, payload.ttl, payload.timeout)
    if key is None:
        command, created = create_command(*asked), True
    else:
        try:
            command, created = create_command_once(key, *asked)
        except KeyReused as exc:
            raise HttpError(422, str(exc))
    if created:
        async_to_sync(announce_command)(get_channel_layer(), command)
    return Status(201, command_frame(command))


@router.get("/commands/", response=list[CommandOut], summary="The audit trail: commands to the devices you may see, newest first")
def command_log(
    request,
    device: str = Query(None, description="Only this device's commands."),
    sent_by: str = Query(None, description="Only the commands this username sent."),
    status: Command.Status = Query(None, description="Only commands with this status."),
    before: int = Query(None, description="Epoch milliseconds: only commands created before, to page back."),
    limit: int = Query(50, ge=1, le=500),
):
    visible = access.visible_devices_on(settings.READ_DATABASE, request.auth)
    commands = Command.objects.using(settings.READ_DATABASE).filter(device__in=visible)
    if device is not None:
        commands = commands.filter(device_id=device)
    if sent_by is not None:
        commands = commands.filter(created_by_name=sent_by)
    if status is not None:
        commands = commands.filter(status=status)
    if before is not None:
        commands = commands.filter(created__lt=datetime.fromtimestamp(before / 1000, timezone.utc))
    return [command_frame(command) for command in commands.order_by("-created")[:limit]]


@router.get("/commands/{command_id}/", response=CommandOut, summary="One command")
def get_command(request, command_id: uuid.UUID):
    visible = access.visible_devices(request.auth)
    return command_frame(get_object_or_404(Command.objects.filter(device__in=visible), pk=command_id))
