"""The messages that cross the channel layer, and the dashboard frames they carry.

The bridge publishes each device's events to the device's group; dashboards' consumers
forward the frame text as it is, so a frame is encoded once whatever the number of sockets.
Values are plain JSON types and epoch milliseconds: msgpack carries no datetime, UUID or Decimal.
"""
import orjson

# The named channel the bridge listens on for commands to send (see hub/asgi.py).
BRIDGE_COMMANDS_CHANNEL = "bridge.commands"


def device_group(device_id):
    """The channel-layer group of one device; its id pattern keeps the name valid."""
    return f"device.{device_id}"


def to_ms(moment):
    return None if moment is None else int(moment.timestamp() * 1000)


def readings_event(device_id, seq, samples):
    """One readings frame: `seq` rises by one per frame of a device, so a gap shows a loss."""
    frame = {"type": "readings", "device": device_id, "seq": seq, "items": [
        {"ts": sample.ts, "values": sample.values} for sample in samples
    ]}
    return {"type": "device.readings", "device": device_id, "seq": seq, "frame": _text(frame)}


def status_event(device_id, online, ts_ms):
    frame = {"type": "status", "device": device_id, "online": online, "ts": ts_ms}
    return {"type": "device.status", "device": device_id, "frame": _text(frame)}


def command_frame(command):
    return {
        "type": "command",
        "id": str(command.id),
        "device": command.device_id,
        "name": command.name,
        "params": command.params,
        "status": command.status,
        "ttl": command.ttl,
        "created": to_ms(command.created),
        "sent": to_ms(command.sent_at),
        "finished": to_ms(command.finished_at),
        "result": command.result,
        "error": command.error or None,
    }


def command_event(command):
    return {"type": "device.command", "device": command.device_id, "frame": _text(command_frame(command))}


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
