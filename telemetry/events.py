"""The messages that cross the channel layer, and the dashboard frames they carry.

Every live event goes to one group, LIVE_GROUP, which each web process joins once (see
telemetry.relay): the readings of one flush of the bridge as one message, and each status
change and each step of a command as one message. The channel layer thus carries a bounded
number of messages per flush whatever the number of devices and sockets. Frames are encoded
here once and forwarded as text to every socket that watches their device.
Values are plain JSON types and epoch milliseconds: msgpack carries no datetime, UUID or Decimal.
"""
import orjson

# The named channel the bridge listens on for commands to send (see hub/asgi.py).
BRIDGE_COMMANDS_CHANNEL = "bridge.commands"

# The group of every web process's live relay.
LIVE_GROUP = "live"


def to_ms(moment):
    return None if moment is None else int(moment.timestamp() * 1000)


def readings_frame(device_id, seq, samples):
    """One device's readings frame, as (device, seq, text): `seq` rises by one per frame of a
    device, so a gap shows a loss."""
    frame = {"type": "readings", "device": device_id, "seq": seq, "items": [
        {"ts": sample.ts, "values": sample.values} for sample in samples
    ]}
    return [device_id, seq, _text(frame)]


def readings_event(frames):
    """The readings frames of one flush, as readings_frame() makes them."""
    return {"type": "live.readings", "frames": frames}


def status_event(device_id, online, ts_ms):
    frame = {"type": "status", "device": device_id, "online": online, "ts": ts_ms}
    return device_event(device_id, frame)


def command_frame(command):
    return {
        "type": "command",
        "id": str(command.id),
        "device": command.device_id,
        "name": command.name,
        "params": command.params,
        "sent_by": command.created_by_name or None,
        "status": command.status,
        "ttl": command.ttl,
        "timeout": command.timeout,
        "created": to_ms(command.created),
        "sent": to_ms(command.sent_at),
        "finished": to_ms(command.finished_at),
        "result": command.result,
        "error": command.error or None,
    }


def command_event(command):
    frame = command_frame(command)
    try:
        event = device_event(command.device_id, frame)
    except orjson.JSONEncodeError:
        # Params stored before they were checked on creation (devices.commands.check_params)
        # may be beyond orjson: dashboards still learn the command's status.
        event = device_event(command.device_id, {**frame, "params": None})
    # command_status: for the bridge's count of commands by status (bridge/metrics.py).
    return {**event, "command_status": command.status}


def device_event(device_id, frame):
    """Any other live frame: for the sockets that watch `device_id`."""
    return {"type": "live.event", "device": device_id, "frame": _text(frame)}


def probe_event(relay_id, number):
    """A relay's probe of the live stream, sent to the live group: only that relay heeds it."""
    return {"type": "live.probe", "relay": relay_id, "number": number}


def resync_frame(device_ids):
    """Tells a dashboard that live frames of these devices may have been lost: fresh
    snapshots follow, and the client should refetch history it missed."""
    return _text({"type": "resync", "devices": sorted(device_ids)})


def command_dispatch_message(command_id):
    """Asks the bridge to send a command that was just created."""
    return {"type": "command.dispatch", "id": str(command_id)}


def snapshot_frame(device, latest_values):
    return {
        "type": "snapshot",
        "device": device.id,
        "name": device.name,
        "online": device.online,
        "last_seen": to_ms(device.last_seen),
        "seq": device.seq,
        "latest": {row.key: {"ts": row.ts, "value": row.value} for row in latest_values},
    }


def error_frame(code, detail, **extra):
    return _text({"type": "error", "code": code, "detail": detail, **extra})


def _text(frame):
    return orjson.dumps(frame).decode()
