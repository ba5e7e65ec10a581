"""The messages that cross the channel layer, and the dashboard frames they carry.

Readings go to shard groups: each flush of the bridge sends one message per shard holding
the frames of every device in that shard, so the channel layer carries a bounded number of
messages whatever the number of devices. Status and command events, which are rare, go to
the device's own group. Consumers forward a frame's text as it is, so a frame is encoded once
whatever the number of sockets.
Values are plain JSON types and epoch milliseconds: msgpack carries no datetime, UUID or Decimal.
"""
import zlib

import orjson
from django.conf import settings

# The named channel the bridge listens on for commands to send (see hub/asgi.py).
BRIDGE_COMMANDS_CHANNEL = "bridge.commands"


def device_group(device_id):
    """The channel-layer group of one device; its id pattern keeps the name valid."""
    return f"device.{device_id}"


def to_ms(moment):
    return None if moment is None else int(moment.timestamp() * 1000)


def live_shard(device_id):
    """The shard whose group carries a device's readings: crc32 keeps it stable across processes."""
    return zlib.crc32(device_id.encode()) % settings.LIVE_SHARDS


def shard_group(shard):
    return f"live.{shard}"


def readings_frame(device_id, seq, samples):
    """One device's readings frame, as (device, seq, text): `seq` rises by one per frame of a
    device, so a gap shows a loss."""
    frame = {"type": "readings", "device": device_id, "seq": seq, "items": [
        {"ts": sample.ts, "values": sample.values} for sample in samples
    ]}
    return [device_id, seq, _text(frame)]


def readings_event(frames):
    """The readings frames of one flush for one shard's group; consumers keep the devices they watch."""
    return {"type": "live.readings", "frames": frames}


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
