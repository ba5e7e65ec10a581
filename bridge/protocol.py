"""The device contract over MQTT, as docs/protocol.md states it: topics, and the payloads a
device may send, parsed and checked. Every rejection names its reason, which the bridge counts."""
import math
import re
import uuid
from dataclasses import dataclass

import orjson

from devices.models import DEVICE_ID_RE
from devices.payloads import MAX_DEPTH, MAX_SAFE_INTEGER, TooDeep, UnsafeJson, check_json

TELEMETRY = "telemetry"
STATUS = "status"
COMMAND_RESULT = "commands/result"

SUBSCRIPTIONS = (f"devices/+/{TELEMETRY}", f"devices/+/{STATUS}", f"devices/+/{COMMAND_RESULT}")

MAX_ENTRIES = 1000
MAX_STRING = 256
MAX_ERROR_TEXT = 1000
MIN_TS = 946684800000  # 2000-01-01T00:00:00Z
MAX_FUTURE_MS = 5 * 60 * 1000
# The rollups and bucketed history add numbers up, and PostgreSQL refuses a sum that overflows
# (1.7e308 twice): a minute of such readings would fail the rollup job's every batch holding it.
# Sums of 10^8 numbers within this bound stay finite.
MAX_NUMBER = 1e300

_TOPIC_RE = re.compile(rf"devices/({DEVICE_ID_RE})/({TELEMETRY}|{STATUS}|{re.escape(COMMAND_RESULT)})\Z")
_KEY_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")


class Rejected(Exception):
    """A message the hub drops: `reason` is a short counter name, `detail` says what was wrong."""

    def __init__(self, reason, detail):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# The broker sends a retained message again to every new subscription, so a bridge would store
# a retained reading again at each start (with a new receive time, as a new reading).
RETAINED_TELEMETRY = Rejected("retained", "telemetry must not be retained: the broker resends it to every subscriber")


@dataclass(slots=True, frozen=True)
class Sample:
    """Values a device measured at one instant (epoch milliseconds)."""

    ts: int
    values: dict


@dataclass(slots=True, frozen=True)
class CommandResult:
    command_id: uuid.UUID
    ok: bool
    result: object = None
    error: str = ""


class RefusedResult(Rejected):
    """A device's answer to a command whose content the hub refuses to keep. The command still
    ends: `failure` is the answer to record instead, saying why."""

    def __init__(self, command_id, reason, detail):
        super().__init__(reason, detail)
        self.failure = CommandResult(command_id, False, error=f"the device's result was refused: {reason}: {detail}")


def device_topic(device_id, kind):
    """The topic a device publishes `kind` (TELEMETRY, STATUS, COMMAND_RESULT) on."""
    return f"devices/{device_id}/{kind}"


def commands_topic(device_id):
    return f"devices/{device_id}/commands"


def command_payload(command_id, name, params):
    return orjson.dumps({"id": str(command_id), "name": name, "params": params})


def parse_topic(topic):
    """(device id, kind) of a topic the bridge subscribes to."""
    match = _TOPIC_RE.match(topic)
    if match is None:
        raise Rejected("bad_topic", f"not a device topic: {topic[:200]!r}")
    return match.group(1), match.group(2)


def _load_json(payload, max_bytes):
    if len(payload) > max_bytes:
        raise Rejected("too_large", f"{len(payload)} bytes, the limit is {max_bytes}")
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith("depth limit exceeded"):
            raise Rejected("too_deep", "nested more than 1024 levels")
        raise Rejected("not_json", str(exc)[:200])


def _deeper_than(document, levels):
    """Whether `document` nests objects and arrays more than `levels` deep; looks no deeper."""
    stack = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > levels:
                return True
            stack.extend((item, depth + 1) for item in (value.values() if isinstance(value, dict) else value))
    return False


def parse_telemetry(payload, now_ms, max_bytes):
    """The samples in a telemetry payload: an object of values, {"ts", "values"}, or a list of those.

    Entries without a ts take the receive time `now_ms`; in a list, the n-th such entry takes
    `now_ms + n`, so none of them collide in storage, which keeps one reading per device, key and ts.
    """
    document = _load_json(payload, max_bytes)
    try:
        return _parse_samples(document, now_ms)
    except Rejected as refusal:
        # Depth is measured only for what is refused anyway: an accepted document is at most
        # three levels deep (a list of entries of values), and the hot path stays as it was.
        if refusal.reason in ("bad_shape", "bad_value") and _deeper_than(document, MAX_DEPTH):
            raise Rejected("too_deep", f"nested deeper than {MAX_DEPTH} levels") from None
        raise


def _parse_samples(document, now_ms):
    if not isinstance(document, list):
        return [_parse_entry(document, now_ms, now_ms)]
    if not document:
        raise Rejected("bad_shape", "an empty list")
    if len(document) > MAX_ENTRIES:
        raise Rejected("too_many", f"{len(document)} entries, the limit is {MAX_ENTRIES}")
    samples = []
    untimed = 0
    for entry in document:
        samples.append(_parse_entry(entry, now_ms, now_ms + untimed))
        untimed += not (isinstance(entry, dict) and "ts" in entry)
    return samples


def _parse_entry(entry, now_ms, receive_ts):
    if not isinstance(entry, dict):
        raise Rejected("bad_shape", f"expected an object, got {type(entry).__name__}")
    if "values" in entry:
        extra = entry.keys() - {"ts", "values"}
        if extra:
            raise Rejected("bad_shape", f"unexpected fields beside ts and values: {sorted(extra)[:5]}")
        ts = _parse_ts(entry["ts"], now_ms) if "ts" in entry else receive_ts
        values = entry["values"]
        if not isinstance(values, dict):
            raise Rejected("bad_shape", "values must be an object")
    else:
        if "ts" in entry:
            raise Rejected("bad_shape", 'a timestamp needs the form {"ts": ..., "values": {...}}')
        ts, values = receive_ts, entry
    if not values:
        raise Rejected("bad_shape", "no values")
    for key, value in values.items():
        _check_value(key, value)
    return Sample(ts, values)


def _parse_ts(ts, now_ms):
    if isinstance(ts, bool) or not isinstance(ts, (int, float)):
        raise Rejected("bad_ts", "ts must be epoch milliseconds")
    if not MIN_TS <= ts <= now_ms + MAX_FUTURE_MS:
        raise Rejected("bad_ts", f"ts {ts} is before 2000 or more than 5 minutes ahead")
    return int(ts)


def _check_value(key, value):
    if not _KEY_RE.match(key):
        raise Rejected("bad_key", f"key {key[:80]!r} is not 1-64 of A-Z a-z 0-9 _ . -")
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise Rejected("bad_value", f"{key}: string longer than {MAX_STRING} characters")
        if "\x00" in value:
            raise Rejected("bad_value", f"{key}: text holds a NUL character (\\u0000), which PostgreSQL cannot store")
        return
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)) and math.isfinite(value):
        if abs(value) > MAX_NUMBER:
            raise Rejected("bad_value", f"{key}: a number beyond ±{MAX_NUMBER:g}")
        return
    raise Rejected("bad_value", f"{key}: expected a finite number, a boolean or a string")


def parse_status(payload):
    """True for "online", False for "offline"."""
    text = payload.strip()
    if text == b"online":
        return True
    if text == b"offline":
        return False
    raise Rejected("bad_status", 'status must be "online" or "offline"')


def parse_command_result(payload, max_bytes):
    document = _load_json(payload, max_bytes)
    if not isinstance(document, dict):
        raise Rejected("bad_shape", "a command result is an object")
    try:
        command_id = uuid.UUID(str(document.get("id")))
    except ValueError:
        raise Rejected("bad_shape", "id must be the command's uuid")
    ok = document.get("ok")
    if not isinstance(ok, bool):
        raise Rejected("bad_shape", "ok must be true or false")
    if ok:
        answer = CommandResult(command_id, True, result=document.get("result"))
    else:
        error = document.get("error", "")
        if not isinstance(error, str):
            raise Rejected("bad_shape", "error must be a string")
        answer = CommandResult(command_id, False, error=error[:MAX_ERROR_TEXT])
    _check_answer(answer)
    return answer


def _check_answer(answer):
    """Refuses what the hub could store but not send on (orjson encodes 254 levels at most, a
    browser's numbers are exact within ±2^53, PostgreSQL's jsonb reads 1e300 back as an integer
    of 301 digits) or could not store at all (NUL on PostgreSQL)."""
    try:
        # One level more: the result itself may nest MAX_DEPTH deep.
        document = {"result": answer.result, "error": answer.error}
        check_json(document, max_depth=MAX_DEPTH + 1, max_float=MAX_SAFE_INTEGER)
    except TooDeep:
        raise RefusedResult(answer.command_id, "too_deep", f"the result nests deeper than {MAX_DEPTH} levels") from None
    except UnsafeJson as problem:
        raise RefusedResult(answer.command_id, "bad_result", str(problem)) from None
