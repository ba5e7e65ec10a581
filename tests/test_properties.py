"""Property-based tests of what devices and dashboards send: no input escapes the parsers as an
unexpected exception, every refusal carries a known reason, and valid input comes out exactly."""
import json

import orjson
from hypothesis import given, settings, strategies as st

from bridge.protocol import (
    MAX_FUTURE_MS, MAX_NUMBER, MIN_TS, Rejected, parse_command_result, parse_telemetry, parse_topic,
)
from telemetry.frames import FrameError, SendCommand, Subscribe, parse_client_frame

NOW = 1_764_000_000_000
LIMIT = 65536
TELEMETRY_REASONS = {"not_json", "too_deep", "bad_shape", "bad_key", "bad_value", "bad_ts", "too_many", "too_large"}
FRAME_CODES = {"bad_json", "bad_frame", "unknown_action"}

keys = st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True)
device_ids = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=256)
values = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(-MAX_NUMBER, MAX_NUMBER),
    text,
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)


def telemetry_outcome(payload):
    """The samples, or the reason of the refusal; any other exception fails the test."""
    try:
        return parse_telemetry(payload, NOW, LIMIT)
    except Rejected as refusal:
        assert refusal.reason in TELEMETRY_REASONS and refusal.detail is not None
        return refusal.reason


@given(st.binary(max_size=3000))
def test_no_bytes_escape_the_telemetry_parser(payload):
    telemetry_outcome(payload)


@given(json_values)
def test_no_json_document_escapes_the_telemetry_parser(document):
    telemetry_outcome(json.dumps(document).encode())  # json.dumps writes NaN and huge ints, which must be refused too


# "ts" and "values" are the timestamped form's fields: an object of values cannot hold them.
value_keys = keys.filter(lambda key: key not in ("ts", "values"))


@given(st.dictionaries(value_keys, values, min_size=1, max_size=20), st.none() | st.integers(MIN_TS, NOW + MAX_FUTURE_MS))
def test_valid_telemetry_comes_out_exactly(measured, ts):
    document = measured if ts is None else {"ts": ts, "values": measured}
    (sample,) = parse_telemetry(orjson.dumps(document), NOW, LIMIT)
    assert sample.ts == (NOW if ts is None else ts)
    assert sample.values == measured
    assert [type(value) for value in sample.values.values()] == [type(value) for value in measured.values()]


@given(st.lists(st.tuples(st.integers(MIN_TS, NOW), st.dictionaries(keys, values, min_size=1, max_size=3)), min_size=1, max_size=50))
def test_valid_batches_come_out_exactly_and_in_order(entries):
    payload = orjson.dumps([{"ts": ts, "values": measured} for ts, measured in entries])
    assert [(sample.ts, sample.values) for sample in parse_telemetry(payload, NOW, LIMIT)] == entries


@given(st.text(max_size=200))
def test_any_topic_is_a_device_topic_or_refused_as_bad_topic(topic):
    try:
        device_id, kind = parse_topic(topic)
    except Rejected as refusal:
        assert refusal.reason == "bad_topic"
    else:
        assert topic == f"devices/{device_id}/{kind}"


@given(st.binary(max_size=500) | json_values.map(lambda document: json.dumps(document).encode()))
def test_no_command_result_escapes_its_parser(payload):
    try:
        parse_command_result(payload, LIMIT)
    except Rejected as refusal:
        assert refusal.reason in {"not_json", "too_deep", "bad_shape", "bad_result", "too_large"}


def frame_outcome(data):
    try:
        return parse_client_frame(data)
    except FrameError as refusal:
        assert refusal.code in FRAME_CODES and refusal.detail
        return refusal.code


@settings(max_examples=200)
@given(st.text(max_size=500) | st.binary(max_size=200))
def test_no_text_escapes_the_frame_parser(data):
    frame_outcome(data)


@settings(max_examples=200)
@given(json_values | st.fixed_dictionaries({"action": st.sampled_from(["subscribe", "unsubscribe", "command"])}, optional={
    "devices": json_values, "device": json_values, "name": json_values, "params": json_values, "ttl": json_values,
}))
def test_no_json_frame_escapes_the_frame_parser(frame):
    frame_outcome(json.dumps(frame))


@given(st.lists(device_ids, min_size=1, max_size=20))
def test_valid_subscriptions_come_out_exactly(devices):
    assert parse_client_frame(orjson.dumps({"action": "subscribe", "devices": devices}).decode()) == Subscribe(frozenset(devices))


# What command params may hold (devices.commands.check_params): no NUL, numbers within ±2^53.
param_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=256)
param_values = st.one_of(
    st.booleans(), st.integers(-(2**53 - 1), 2**53 - 1), st.floats(-(2**53 - 1), 2**53 - 1), param_text,
)


@given(device_ids, keys, st.dictionaries(param_text, param_values, max_size=5), st.integers(1, 3600), st.integers(1, 3600))
def test_valid_commands_come_out_exactly(device, name, params, ttl, timeout):
    frame = {"action": "command", "device": device, "name": name, "params": params, "ttl": ttl, "timeout": timeout}
    assert parse_client_frame(orjson.dumps(frame).decode()) == SendCommand(device, name, params, ttl, timeout)
