"""The device contract over MQTT (docs/protocol.md): what bridge/protocol.py accepts and why it refuses the rest."""
import uuid

import orjson
import pytest

from bridge.protocol import (
    MAX_ENTRIES,
    MIN_TS,
    Rejected,
    command_payload,
    parse_command_result,
    parse_status,
    parse_telemetry,
    parse_topic,
)

NOW = 1_764_000_000_000
LIMIT = 65536


def parse(payload):
    return [(sample.ts, sample.values) for sample in parse_telemetry(payload, NOW, LIMIT)]


def rejection(function, *args):
    with pytest.raises(Rejected) as caught:
        function(*args)
    return caught.value


@pytest.mark.parametrize("payload, expected", [
    (b'{"temp": 21.5, "door": false, "mode": "eco", "count": 3}',
     [(NOW, {"temp": 21.5, "door": False, "mode": "eco", "count": 3})]),
    (b'{"ts": 1763999999000, "values": {"temp": 21.5}}', [(1763999999000, {"temp": 21.5})]),
    (b'{"values": {"temp": 1}}', [(NOW, {"temp": 1})]),
    (b'[{"ts": 1763999999000, "values": {"a": 1}}, {"b": true}, {"c": "x"}]',
     [(1763999999000, {"a": 1}), (NOW, {"b": True}), (NOW + 1, {"c": "x"})]),
    (b'{"ts": 1764000300000, "values": {"a": 1}}', [(NOW + 300_000, {"a": 1})]),
    (b'{"ts": 946684800000, "values": {"a": -0.5}}', [(MIN_TS, {"a": -0.5})]),
    (b'{"ts": 1763999999000.7, "values": {"a": 1}}', [(1763999999000, {"a": 1})]),
    (b'{"k.e-y_1": 1e300}', [(NOW, {"k.e-y_1": 1e300})]),
], ids=["flat", "timestamped", "values-without-ts", "list", "five-minutes-ahead", "year-2000", "fractional-ts", "key-chars"])
def test_accepted_telemetry_comes_out_exactly(payload, expected):
    assert parse(payload) == expected


def test_booleans_stay_booleans_and_numbers_stay_numbers():
    ((_, values),) = parse(b'{"on": true, "one": 1, "zero": 0, "off": false}')
    assert [type(values[key]) for key in ("on", "one", "zero", "off")] == [bool, int, int, bool]


@pytest.mark.parametrize("payload, reason, detail", [
    (b"temp=21", "not_json", ""),
    (b'{"temp": "\xff\xfe"}', "not_json", ""),
    (b'{"temp": NaN}', "not_json", ""),
    (b'{"temp": Infinity}', "not_json", ""),
    (b"[" * 2000 + b"]" * 2000, "not_json", ""),
    (b"[]", "bad_shape", "empty"),
    (b"42", "bad_shape", "expected an object"),
    (b"{}", "bad_shape", "no values"),
    (b'{"values": {}}', "bad_shape", "no values"),
    (b'{"values": [1]}', "bad_shape", "values must be an object"),
    (b'{"ts": 1763999999000, "temp": 1}', "bad_shape", "timestamp needs the form"),
    (b'{"ts": 1763999999000, "values": {"a": 1}, "extra": 1}', "bad_shape", "unexpected fields"),
    (b'[{"a": 1}, 7]', "bad_shape", "expected an object"),
    (b'{"temp rature": 1}', "bad_key", "temp rature"),
    (b'{"": 1}', "bad_key", ""),
    (b'{"' + b"k" * 65 + b'": 1}', "bad_key", ""),
    (b'{"temp": [1, 2]}', "bad_value", "temp"),
    (b'{"temp": {"c": 1}}', "bad_value", "temp"),
    (b'{"temp": null}', "bad_value", "temp"),
    (b'{"note": "' + b"x" * 257 + b'"}', "bad_value", "256"),
    (b'{"ts": 1000, "values": {"a": 1}}', "bad_ts", "before 2000"),
    (b'{"ts": 1764000300001, "values": {"a": 1}}', "bad_ts", "ahead"),
    (b'{"ts": "yesterday", "values": {"a": 1}}', "bad_ts", "epoch milliseconds"),
    (b'{"ts": true, "values": {"a": 1}}', "bad_ts", "epoch milliseconds"),
    (b"[" + b",".join([b"{}"] * (MAX_ENTRIES + 1)) + b"]", "too_many", "1001 entries"),
], ids=lambda value: value if isinstance(value, str) else None)
def test_bad_telemetry_is_rejected_with_its_reason(payload, reason, detail):
    refused = rejection(parse_telemetry, payload, NOW, LIMIT)
    assert refused.reason == reason
    assert detail in refused.detail


def test_a_payload_over_the_limit_is_rejected_before_it_is_parsed():
    refused = rejection(parse_telemetry, b'{"blob": "' + b"x" * 100 + b'"}', NOW, 64)
    assert (refused.reason, refused.detail) == ("too_large", "112 bytes, the limit is 64")


def test_a_list_of_the_most_entries_allowed_is_accepted():
    payload = orjson.dumps([{"ts": NOW - n, "values": {"v": n}} for n in range(MAX_ENTRIES)])
    assert len(parse(payload)) == MAX_ENTRIES


@pytest.mark.parametrize("topic, expected", [
    ("devices/boiler-1/telemetry", ("boiler-1", "telemetry")),
    ("devices/B_2/status", ("B_2", "status")),
    ("devices/x/commands/result", ("x", "commands/result")),
])
def test_device_topics_name_the_device_and_the_kind(topic, expected):
    assert parse_topic(topic) == expected


@pytest.mark.parametrize("topic", [
    "devices/bad id!/telemetry", "devices//telemetry", "devices/a/b/telemetry", "devices/a/commands",
    "devices/a/telemetry/extra", "other/a/telemetry", "devices/" + "a" * 65 + "/telemetry", "devices/+/telemetry",
])
def test_other_topics_are_rejected(topic):
    assert rejection(parse_topic, topic).reason == "bad_topic"


@pytest.mark.parametrize("payload, online", [(b"online", True), (b"offline", False), (b" online\n", True)])
def test_status_is_online_or_offline(payload, online):
    assert parse_status(payload) is online


@pytest.mark.parametrize("payload", [b"sleepy", b"", b"ONLINE", b'"online"'])
def test_any_other_status_is_rejected(payload):
    assert rejection(parse_status, payload).reason == "bad_status"


def test_command_results_carry_the_result_or_the_error():
    command_id = uuid.uuid4()
    ok = parse_command_result(orjson.dumps({"id": str(command_id), "ok": True, "result": {"pong": 1}}), LIMIT)
    assert (ok.command_id, ok.ok, ok.result) == (command_id, True, {"pong": 1})
    failed = parse_command_result(orjson.dumps({"id": str(command_id), "ok": False, "error": "x" * 5000}), LIMIT)
    assert (failed.ok, len(failed.error)) == (False, 1000)


@pytest.mark.parametrize("payload, detail", [
    (b'{"id": "not-a-uuid", "ok": true}', "uuid"),
    (b'{"ok": true}', "uuid"),
    (orjson.dumps({"id": str(uuid.uuid4()), "ok": "yes"}), "ok must be"),
    (orjson.dumps({"id": str(uuid.uuid4()), "ok": False, "error": 5}), "error must be"),
    (b"[1]", "an object"),
])
def test_malformed_command_results_are_rejected(payload, detail):
    refused = rejection(parse_command_result, payload, LIMIT)
    assert refused.reason == "bad_shape" and detail in refused.detail


def test_a_command_goes_to_the_device_as_documented():
    command_id = uuid.uuid4()
    assert orjson.loads(command_payload(command_id, "reboot", {"delay": 5})) == {
        "id": str(command_id), "name": "reboot", "params": {"delay": 5},
    }
