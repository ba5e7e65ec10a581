"""Frames dashboards send over their websocket (docs/protocol.md), parsed and checked."""
import re
from dataclasses import dataclass

import orjson
from django.conf import settings

from devices.commands import check_params
from devices.models import COMMAND_NAME_RE, DEVICE_ID_RE
from devices.payloads import UnsafeJson

ALL_DEVICES = "*"
MAX_FRAME_BYTES = 65536
MAX_DEVICES_PER_FRAME = 1000

_DEVICE_ID_RE = re.compile(rf"{DEVICE_ID_RE}\Z")
_COMMAND_NAME_RE = re.compile(rf"{COMMAND_NAME_RE}\Z")


class FrameError(Exception):
    """A frame the hub refuses: the client gets an error frame with `code` and `detail`."""

    def __init__(self, code, detail, **extra):
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.extra = extra


@dataclass(frozen=True)
class Subscribe:
    devices: frozenset | str  # device ids, or ALL_DEVICES


@dataclass(frozen=True)
class Unsubscribe:
    devices: frozenset | str


@dataclass(frozen=True)
class SendCommand:
    device: str
    name: str
    params: dict
    ttl: int
    timeout: int


def parse_client_frame(data, default_device=None):
    """The action a frame asks for. `default_device` is the device a command goes to when the
    frame names none (the one-device socket)."""
    if isinstance(data, bytes):
        raise FrameError("bad_frame", "send JSON in text frames")
    if len(data.encode("utf-8", "surrogatepass")) > MAX_FRAME_BYTES:
        raise FrameError("bad_frame", f"frames are limited to {MAX_FRAME_BYTES} bytes")
    try:
        frame = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise FrameError("bad_json", str(exc)[:200])
    if not isinstance(frame, dict):
        raise FrameError("bad_frame", "a frame is a JSON object with an action")
    action = frame.get("action")
    parse = ACTIONS.get(action) if isinstance(action, str) else None
    if parse is None:
        raise FrameError("unknown_action", "action must be subscribe, unsubscribe or command")
    return parse(frame, default_device)


def _device_list(frame):
    devices = frame.get("devices")
    if devices == ALL_DEVICES or devices == [ALL_DEVICES]:
        return ALL_DEVICES
    if not isinstance(devices, list) or not devices:
        raise FrameError("bad_frame", 'devices must be a list of device ids, or "*"')
    if len(devices) > MAX_DEVICES_PER_FRAME:
        raise FrameError("bad_frame", f"at most {MAX_DEVICES_PER_FRAME} devices in one frame")
    for device_id in devices:
        if not isinstance(device_id, str) or not _DEVICE_ID_RE.match(device_id):
            raise FrameError("bad_frame", f"not a device id: {str(device_id)[:80]!r}")
    return frozenset(devices)


def _command(frame, default_device):
    device = frame.get("device", default_device)
    if default_device is not None and device != default_device:
        raise FrameError("bad_frame", f"this socket commands {default_device} only")
    if not isinstance(device, str) or not _DEVICE_ID_RE.match(device):
        raise FrameError("bad_frame", "device must be a device id")
    name = frame.get("name")
    if not isinstance(name, str) or not _COMMAND_NAME_RE.match(name):
        raise FrameError("bad_frame", "name must be 1-64 of A-Z a-z 0-9 _ . -")
    params = frame.get("params", {})
    if not isinstance(params, dict):
        raise FrameError("bad_frame", "params must be an object")
    try:
        check_params(name, params)
    except UnsafeJson as exc:
        raise FrameError("bad_frame", str(exc))
    ttl = _seconds(frame, "ttl", settings.COMMAND_DEFAULT_TTL, settings.COMMAND_MAX_TTL)
    timeout = _seconds(frame, "timeout", settings.COMMAND_DEFAULT_TIMEOUT, settings.COMMAND_MAX_TIMEOUT)
    return SendCommand(device, name, params, ttl, timeout)


def _seconds(frame, field, default, maximum):
    seconds = frame.get(field, default)
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 1 <= seconds <= maximum:
        raise FrameError("bad_frame", f"{field} must be whole seconds from 1 to {maximum}")
    return seconds


# Every action a frame may ask for, and its parser (tests/test_access_matrix.py has rows for each).
ACTIONS = {
    "subscribe": lambda frame, default_device: Subscribe(_device_list(frame)),
    "unsubscribe": lambda frame, default_device: Unsubscribe(_device_list(frame)),
    "command": _command,
}
