"""The device contract over MQTT (docs/protocol.md): what bridge/protocol.py accepts and why it refuses the rest."""
import uuid

import orjson
import pytest

from bridge.protocol import (
    COMMAND_RESULT,
    MAX_ENTRIES,
    MAX_FUTURE_MS,
    MIN_TS,
    STATUS,
    SUBSCRIPTIONS,
    TELEMETRY,
    CommandResult,
    Rejected,
    RefusedResult,
    commands_topic,
    command_payload,
    device_topic,
    parse_command_result,
    parse_status,
    parse_telemetry,
    parse_topic,
)

NOW = 1_764_000_000_000  # the hub's receive time, 2025-11-24
EARLIER = NOW - 60_000
LIMIT = 65536


def parse(payload, max_bytes=LIMIT):
    """The (ts, values) of each sample in a telemetry payload received at NOW."""
    return [(sample.ts, sample.values) for sample in parse_telemetry(payload, NOW, max_bytes)]


def rejection(function, *args):
    """The Rejected that function(*args) raises."""
    with pytest.raises(Rejected) as caught:
        function(*args)
    return caught.value


def entries(count):
    """A telemetry list of `count` timestamped entries, as a device sends a backlog."""
    return orjson.dumps([{"ts": EARLIER - n * 1000, "values": {"temp": 20 + n / 100}} for n in range(count)])


# Telemetry that is accepted

@pytest.mark.parametrize("payload, expected", [
    pytest.param(
        b'{"temp": 21.5, "door": false, "mode": "eco", "count": 3}',
        [(NOW, {"temp": 21.5, "door": False, "mode": "eco", "count": 3})],
        id="flat-object-takes-receive-time"),
    pytest.param(
        b'{"ts": 1763999940000, "values": {"temp": 21.5, "pump": true}}',
        [(1763999940000, {"temp": 21.5, "pump": True})],
        id="object-with-ts"),
    pytest.param(
        b'{"values": {"temp": 21.5}}',
        [(NOW, {"temp": 21.5})],
        id="values-without-ts-takes-receive-time"),
    pytest.param(
        b'[{"ts": 1763999940000, "values": {"temp": 21.4}}, {"ts": 1763999970000, "values": {"temp": 21.5}}]',
        [(1763999940000, {"temp": 21.4}), (1763999970000, {"temp": 21.5})],
        id="list-of-timestamped-objects"),
    pytest.param(
        b'[{"ts": 1763999940000, "values": {"temp": 21.4}}, {"hum": 40}, {"values": {"hum": 41}}, {"door": true}]',
        [(1763999940000, {"temp": 21.4}), (NOW, {"hum": 40}), (NOW + 1, {"hum": 41}), (NOW + 2, {"door": True})],
        id="list-mixing-all-three-forms"),
    pytest.param(
        b'[{"temp": 21.4}, {"temp": 21.5}, {"temp": 21.6}]',
        [(NOW, {"temp": 21.4}), (NOW + 1, {"temp": 21.5}), (NOW + 2, {"temp": 21.6})],
        id="untimed-list-entries-take-consecutive-milliseconds"),
    pytest.param(
        b'{"ts": 1764000300000, "values": {"temp": 21.5}}',
        [(NOW + MAX_FUTURE_MS, {"temp": 21.5})],
        id="ts-exactly-five-minutes-ahead"),
    pytest.param(
        b'{"ts": 946684800000, "values": {"temp": -0.5}}',
        [(MIN_TS, {"temp": -0.5})],
        id="ts-exactly-2000-01-01"),
    pytest.param(
        b'{"ts": 1763999940000.7, "values": {"temp": 21.5}}',
        [(1763999940000, {"temp": 21.5})],
        id="fractional-ts-truncated-to-ms"),
    pytest.param(
        b'{"Zone_2.temp-C": 1e300, "k": -1e-300, "n": 18446744073709551615}',
        [(NOW, {"Zone_2.temp-C": 1e300, "k": -1e-300, "n": 18446744073709551615})],
        id="every-key-character-and-extreme-numbers"),
    pytest.param(
        b'{"' + b"k" * 64 + b'": 1}',
        [(NOW, {"k" * 64: 1})],
        id="64-character-key"),
    pytest.param(
        b'{"note": "' + b"x" * 256 + b'"}',
        [(NOW, {"note": "x" * 256})],
        id="256-character-string"),
    pytest.param(
        '{"note": "'.encode() + ("\u00e9" * 256).encode() + b'"}',
        [(NOW, {"note": "\u00e9" * 256})],
        id="256-characters-counted-not-bytes"),
    pytest.param(
        b'{"note": ""}',
        [(NOW, {"note": ""})],
        id="empty-string"),
])
def test_accepted_telemetry_comes_out_exactly(payload, expected):
    assert parse(payload) == expected


def test_booleans_and_numbers_stay_distinct():
    ((_, values),) = parse(b'{"on": true, "one": 1, "zero": 0, "off": false, "half": 0.5, "whole": 1.0}')
    assert {key: (type(value), value) for key, value in values.items()} == {
        "on": (bool, True), "one": (int, 1), "zero": (int, 0),
        "off": (bool, False), "half": (float, 0.5), "whole": (float, 1.0),
    }


def test_a_timestamped_entry_does_not_use_up_a_receive_millisecond():
    samples = parse_telemetry(b'[{"a": 1}, {"ts": 1763999940000, "values": {"a": 2}}, {"a": 3}]', NOW, LIMIT)
    assert [sample.ts for sample in samples] == [NOW, 1763999940000, NOW + 1]


def test_a_list_of_the_most_entries_allowed_is_accepted():
    samples = parse(entries(MAX_ENTRIES))
    assert len(samples) == MAX_ENTRIES
    assert samples[-1] == (EARLIER - (MAX_ENTRIES - 1) * 1000, {"temp": 20 + (MAX_ENTRIES - 1) / 100})


def test_a_payload_of_exactly_the_limit_is_accepted():
    payload = b'{"note": "' + b"x" * 90 + b'"}'
    assert len(payload) == 102
    assert parse(payload, max_bytes=102) == [(NOW, {"note": "x" * 90})]


# Telemetry that is rejected

@pytest.mark.parametrize("payload, reason, detail", [
    pytest.param(b"temp=21.5", "not_json", "column 1 (char 0)", id="not_json-key-equals-value"),
    pytest.param(b'{"temp": 21.5', "not_json", "unexpected end of data", id="not_json-truncated"),
    pytest.param(b'{"temp": 21.5,}', "not_json", "trailing comma", id="not_json-trailing-comma"),
    pytest.param(b'{"temp": "21\xb0C"}', "not_json", "UTF-8", id="not_json-latin-1-degree-sign"),
    pytest.param(b'{"temp": "\\ud800"}', "not_json", "surrogate", id="not_json-lone-surrogate-escape"),
    pytest.param(b'{"temp": NaN}', "not_json", "column 10 (char 9)", id="not_json-NaN"),
    pytest.param(b'{"temp": Infinity}', "not_json", "column 10 (char 9)", id="not_json-Infinity"),
    pytest.param(b'{"temp": -Infinity}', "not_json", "column 11 (char 10)", id="not_json-minus-Infinity"),
    pytest.param(b'{"temp": 1e400}', "not_json", "infinity", id="not_json-number-out-of-range"),
    pytest.param(b"[" * 1025 + b"]" * 1025, "too_deep", "more than 1024", id="too_deep-nesting-over-1024"),
    pytest.param(b'{"a": ' * 1100 + b"1" + b"}" * 1100, "too_deep", "more than 1024", id="too_deep-objects-over-1024"),
    pytest.param(b'{"gps": ' + b"[" * 32 + b"]" * 32 + b"}", "too_deep", "deeper than 32", id="too_deep-value-33-levels"),
    pytest.param(b"[" * 300 + b'{"temp": 1}' + b"]" * 300, "too_deep", "deeper than 32", id="too_deep-list-300-levels"),
    pytest.param(b'{"values": ' + b'{"a": ' * 40 + b"1" + b"}" * 41, "too_deep", "deeper than 32",
                 id="too_deep-values-40-levels"),
    pytest.param(b'{"note": "a\\u0000b"}', "bad_value", "note: text holds a NUL character", id="bad_value-nul-in-string"),
    pytest.param(b'{"note": "\\u0000"}', "bad_value", "note: text holds a NUL character", id="bad_value-only-nul"),
    pytest.param(b'[{"a": 1}, {"ts": 1763999940000, "values": {"note": "x\\u0000"}}]', "bad_value",
                 "note: text holds a NUL character", id="bad_value-nul-in-second-entry"),
    pytest.param(b"", "not_json", "empty", id="not_json-empty-payload"),
    pytest.param(b"[]", "bad_shape", "empty list", id="bad_shape-empty-list"),
    pytest.param(b"21.5", "bad_shape", "expected an object, got float", id="bad_shape-bare-number"),
    pytest.param(b'"online"', "bad_shape", "expected an object, got str", id="bad_shape-bare-string"),
    pytest.param(b"null", "bad_shape", "expected an object, got NoneType", id="bad_shape-null"),
    pytest.param(b"{}", "bad_shape", "no values", id="bad_shape-empty-object"),
    pytest.param(b'{"values": {}}', "bad_shape", "no values", id="bad_shape-empty-values"),
    pytest.param(b'{"ts": 1763999940000, "values": {}}', "bad_shape", "no values", id="bad_shape-ts-with-empty-values"),
    pytest.param(b'{"values": [21.5]}', "bad_shape", "values must be an object", id="bad_shape-values-a-list"),
    pytest.param(b'{"values": 21.5}', "bad_shape", "values must be an object", id="bad_shape-values-a-number"),
    pytest.param(b'{"ts": 1763999940000, "temp": 21.5}', "bad_shape", "a timestamp needs the form",
                 id="bad_shape-ts-beside-flat-values"),
    pytest.param(b'{"ts": 1763999940000}', "bad_shape", "a timestamp needs the form", id="bad_shape-ts-alone"),
    pytest.param(b'{"ts": 1763999940000, "values": {"temp": 1}, "unit": "C"}', "bad_shape", "['unit']",
                 id="bad_shape-stray-field"),
    pytest.param(b'{"time": 1763999940000, "values": {"temp": 1}}', "bad_shape", "['time']",
                 id="bad_shape-misspelt-ts"),
    pytest.param(b'[{"temp": 21.5}, 21.6]', "bad_shape", "expected an object, got float",
                 id="bad_shape-number-in-list"),
    pytest.param(b'[[{"temp": 21.5}]]', "bad_shape", "expected an object, got list", id="bad_shape-nested-list"),
    pytest.param(b'{"temp rature": 1}', "bad_key", "'temp rature'", id="bad_key-space"),
    pytest.param(b'{"temp/1": 1}', "bad_key", "'temp/1'", id="bad_key-slash"),
    pytest.param('{"température": 1}'.encode(), "bad_key", "'température'", id="bad_key-non-ascii"),
    pytest.param(b'{"temp\\n": 1}', "bad_key", "'temp\\n'", id="bad_key-trailing-newline"),
    pytest.param(b'{"": 1}', "bad_key", "''", id="bad_key-empty"),
    pytest.param(b'{"' + b"k" * 65 + b'": 1}', "bad_key", "'" + "k" * 65 + "'", id="bad_key-65-characters"),
    pytest.param(b'{"values": {"ok": 1, "b@d": 2}}', "bad_key", "'b@d'", id="bad_key-inside-values"),
    pytest.param(b'{"temp": null}', "bad_value", "temp: expected a finite number", id="bad_value-null"),
    pytest.param(b'{"temp": [21.5, 21.6]}', "bad_value", "temp: expected a finite number", id="bad_value-list"),
    pytest.param(b'{"gps": {"lat": 1, "lon": 2}}', "bad_value", "gps: expected a finite number", id="bad_value-object"),
    pytest.param(b'{"gps": ' + b"[" * 31 + b"]" * 31 + b"}", "bad_value", "gps: expected a finite number",
                 id="bad_value-list-32-levels-deep-is-not-too-deep"),
    pytest.param(b'{"temp": 1.7e308}', "bad_value", "temp: a number beyond \u00b11e+300", id="bad_value-near-float-max"),
    pytest.param(b'{"temp": -1.0000001e300}', "bad_value", "temp: a number beyond", id="bad_value-below-minus-1e300"),
    pytest.param(b'{"note": "' + b"x" * 257 + b'"}', "bad_value", "note: string longer than 256",
                 id="bad_value-257-character-string"),
    pytest.param(b'[{"temp": 21.5}, {"ts": 1763999940000, "values": {"temp": null}}]', "bad_value", "temp:",
                 id="bad_value-in-second-entry"),
    pytest.param(b'{"ts": 1764000000, "values": {"temp": 1}}', "bad_ts", "ts 1764000000 is before 2000",
                 id="bad_ts-seconds-not-milliseconds"),
    pytest.param(b'{"ts": 946684799999, "values": {"temp": 1}}', "bad_ts", "ts 946684799999 is before 2000",
                 id="bad_ts-last-ms-of-1999"),
    pytest.param(b'{"ts": 0, "values": {"temp": 1}}', "bad_ts", "ts 0 is before 2000", id="bad_ts-zero"),
    pytest.param(b'{"ts": -1, "values": {"temp": 1}}', "bad_ts", "ts -1 is before 2000", id="bad_ts-negative"),
    pytest.param(b'{"ts": 1764000300001, "values": {"temp": 1}}', "bad_ts", "more than 5 minutes ahead",
                 id="bad_ts-5-minutes-and-1-ms-ahead"),
    pytest.param(b'{"ts": 1764000000000000, "values": {"temp": 1}}', "bad_ts", "more than 5 minutes ahead",
                 id="bad_ts-microseconds"),
    pytest.param(b'{"ts": "2025-11-24T16:00:00Z", "values": {"temp": 1}}', "bad_ts", "epoch milliseconds",
                 id="bad_ts-iso-string"),
    pytest.param(b'{"ts": "1763999940000", "values": {"temp": 1}}', "bad_ts", "epoch milliseconds",
                 id="bad_ts-number-in-string"),
    pytest.param(b'{"ts": null, "values": {"temp": 1}}', "bad_ts", "epoch milliseconds", id="bad_ts-null"),
    pytest.param(b'{"ts": true, "values": {"temp": 1}}', "bad_ts", "epoch milliseconds", id="bad_ts-boolean"),
    pytest.param(b'[{"temp": 1}, {"ts": 1000, "values": {"temp": 2}}]', "bad_ts", "before 2000",
                 id="bad_ts-in-list-entry"),
])
def test_bad_telemetry_is_rejected_with_its_reason_and_what_was_wrong(payload, reason, detail):
    refused = rejection(parse_telemetry, payload, NOW, LIMIT)
    assert refused.reason == reason
    assert detail in refused.detail
    assert str(refused) == f"{reason}: {refused.detail}"


def test_a_list_over_the_most_entries_is_too_many():
    refused = rejection(parse_telemetry, entries(MAX_ENTRIES + 1), NOW, 10 * LIMIT)
    assert (refused.reason, refused.detail) == ("too_many", "1001 entries, the limit is 1000")


def test_a_payload_over_the_limit_is_too_large():
    payload = b'{"note": "' + b"x" * 91 + b'"}'
    refused = rejection(parse_telemetry, payload, NOW, 102)
    assert (refused.reason, refused.detail) == ("too_large", "103 bytes, the limit is 102")


def test_size_is_checked_before_the_payload_is_parsed():
    refused = rejection(parse_telemetry, b"\xff" * 200, NOW, 100)
    assert (refused.reason, refused.detail) == ("too_large", "200 bytes, the limit is 100")


def test_a_long_bad_key_is_shortened_in_the_detail():
    refused = rejection(parse_telemetry, b'{"' + b"k" * 5000 + b'": 1}', NOW, LIMIT)
    assert refused.reason == "bad_key"
    assert "k" * 80 in refused.detail and "k" * 81 not in refused.detail


# Topics

@pytest.mark.parametrize("topic, expected", [
    pytest.param("devices/boiler-1/telemetry", ("boiler-1", TELEMETRY), id="telemetry"),
    pytest.param("devices/B_2/status", ("B_2", STATUS), id="status"),
    pytest.param("devices/x/commands/result", ("x", COMMAND_RESULT), id="command-result"),
    pytest.param("devices/" + "a" * 64 + "/telemetry", ("a" * 64, TELEMETRY), id="64-character-id"),
])
def test_device_topics_name_the_device_and_the_kind(topic, expected):
    assert parse_topic(topic) == expected


@pytest.mark.parametrize("topic", [
    pytest.param("devices/bad id!/telemetry", id="bad-characters"),
    pytest.param("devices//telemetry", id="empty-id"),
    pytest.param("devices/" + "a" * 65 + "/telemetry", id="65-character-id"),
    pytest.param("devices/a.b/telemetry", id="dot-in-id"),
    pytest.param("devices/+/telemetry", id="wildcard"),
    pytest.param("devices/a/b/telemetry", id="extra-level"),
    pytest.param("devices/a/commands", id="hub-to-device-topic"),
    pytest.param("devices/a/telemetry/extra", id="trailing-level"),
    pytest.param("devices/a/telemetry\n", id="trailing-newline"),
    pytest.param("devices/a/Telemetry", id="wrong-case"),
    pytest.param("/devices/a/telemetry", id="leading-slash"),
    pytest.param("other/a/telemetry", id="other-root"),
    pytest.param("", id="empty"),
])
def test_other_topics_are_rejected_naming_the_topic(topic):
    refused = rejection(parse_topic, topic)
    assert refused.reason == "bad_topic"
    assert repr(topic) in refused.detail


def test_a_very_long_bad_topic_is_shortened_in_the_detail():
    refused = rejection(parse_topic, "spam/" + "x" * 5000)
    assert refused.reason == "bad_topic"
    assert len(refused.detail) < 250


@pytest.mark.parametrize("kind", [TELEMETRY, STATUS, COMMAND_RESULT])
def test_a_device_topic_parses_back_to_its_device_and_kind(kind):
    assert parse_topic(device_topic("boiler-1", kind)) == ("boiler-1", kind)


def test_the_bridge_subscribes_to_every_kind_a_device_publishes_and_to_nothing_else():
    assert sorted(SUBSCRIPTIONS) == sorted(device_topic("+", kind) for kind in (TELEMETRY, STATUS, COMMAND_RESULT))
    assert [parse_topic(topic.replace("+", "d1")) for topic in SUBSCRIPTIONS] == [
        ("d1", TELEMETRY), ("d1", STATUS), ("d1", COMMAND_RESULT),
    ]


def test_the_commands_topic_is_not_one_the_bridge_takes_in():
    assert commands_topic("boiler-1") == "devices/boiler-1/commands"
    assert rejection(parse_topic, commands_topic("boiler-1")).reason == "bad_topic"


# Status

@pytest.mark.parametrize("payload, online", [
    pytest.param(b"online", True, id="online"),
    pytest.param(b"offline", False, id="offline"),
    pytest.param(b" online\n", True, id="online-with-whitespace"),
    pytest.param(b"offline\r\n", False, id="offline-with-crlf"),
])
def test_status_is_online_or_offline(payload, online):
    assert parse_status(payload) is online


@pytest.mark.parametrize("payload", [
    pytest.param(b"sleepy", id="other-word"),
    pytest.param(b"", id="empty-retained-clear"),
    pytest.param(b"ONLINE", id="upper-case"),
    pytest.param(b'"online"', id="json-string"),
    pytest.param(b'{"status": "online"}', id="json-object"),
    pytest.param(b"1", id="number"),
])
def test_any_other_status_is_rejected(payload):
    refused = rejection(parse_status, payload)
    assert (refused.reason, refused.detail) == ("bad_status", 'status must be "online" or "offline"')


# Commands

COMMAND_ID = uuid.UUID("0b8f3a52-6a1e-4f0e-9a55-3c1f2b7d9e10")


@pytest.mark.parametrize("document, expected", [
    pytest.param({"id": str(COMMAND_ID), "ok": True, "result": {"pong": 1}},
                 CommandResult(COMMAND_ID, True, result={"pong": 1}), id="ok-with-result"),
    pytest.param({"id": str(COMMAND_ID), "ok": True},
                 CommandResult(COMMAND_ID, True, result=None), id="ok-without-result"),
    pytest.param({"id": str(COMMAND_ID), "ok": True, "result": [1, "two", None]},
                 CommandResult(COMMAND_ID, True, result=[1, "two", None]), id="ok-with-any-json-result"),
    pytest.param({"id": str(COMMAND_ID), "ok": False, "error": "unknown command"},
                 CommandResult(COMMAND_ID, False, error="unknown command"), id="failed-with-error"),
    pytest.param({"id": str(COMMAND_ID), "ok": False},
                 CommandResult(COMMAND_ID, False, error=""), id="failed-without-error"),
    pytest.param({"id": str(COMMAND_ID).upper(), "ok": False, "error": "busy"},
                 CommandResult(COMMAND_ID, False, error="busy"), id="upper-case-uuid"),
])
def test_command_results_carry_the_result_or_the_error(document, expected):
    assert parse_command_result(orjson.dumps(document), LIMIT) == expected


def test_a_long_error_is_cut_to_1000_characters():
    answer = parse_command_result(orjson.dumps({"id": str(COMMAND_ID), "ok": False, "error": "x" * 5000}), LIMIT)
    assert answer.error == "x" * 1000


@pytest.mark.parametrize("payload, reason, detail", [
    pytest.param(b'{"id": "not-a-uuid", "ok": true}', "bad_shape", "id must be the command's uuid", id="id-not-a-uuid"),
    pytest.param(b'{"ok": true}', "bad_shape", "id must be the command's uuid", id="id-missing"),
    pytest.param(b'{"id": 42, "ok": true}', "bad_shape", "id must be the command's uuid", id="id-a-number"),
    pytest.param(orjson.dumps({"id": str(COMMAND_ID), "ok": "yes"}), "bad_shape", "ok must be true or false",
                 id="ok-a-string"),
    pytest.param(orjson.dumps({"id": str(COMMAND_ID), "ok": 1}), "bad_shape", "ok must be true or false",
                 id="ok-a-number"),
    pytest.param(orjson.dumps({"id": str(COMMAND_ID), "result": 1}), "bad_shape", "ok must be true or false",
                 id="ok-missing"),
    pytest.param(orjson.dumps({"id": str(COMMAND_ID), "ok": False, "error": {"code": 5}}), "bad_shape",
                 "error must be a string", id="error-an-object"),
    pytest.param(b'[{"id": "x", "ok": true}]', "bad_shape", "a command result is an object", id="a-list"),
    pytest.param(b"pong", "not_json", "column 1 (char 0)", id="not-json"),
])
def test_malformed_command_results_are_rejected(payload, reason, detail):
    refused = rejection(parse_command_result, payload, LIMIT)
    assert refused.reason == reason
    assert detail in refused.detail


def test_a_command_result_over_the_limit_is_too_large():
    payload = orjson.dumps({"id": str(COMMAND_ID), "ok": True, "result": "x" * 200})
    refused = rejection(parse_command_result, payload, 100)
    assert (refused.reason, refused.detail) == ("too_large", f"{len(payload)} bytes, the limit is 100")


def nested(levels, inner=1):
    """A document `levels` arrays deep around `inner`."""
    document = inner
    for _ in range(levels):
        document = [document]
    return document


def test_a_result_nested_as_deep_as_the_hub_allows_is_accepted():
    answer = parse_command_result(orjson.dumps({"id": str(COMMAND_ID), "ok": True, "result": nested(32)}), LIMIT)
    assert answer == CommandResult(COMMAND_ID, True, result=nested(32))


def answer_payload(ok, **fields):
    """A device's answer, with each field given as its JSON text (orjson writes 254 levels at most)."""
    members = [f'"id": "{COMMAND_ID}"', f'"ok": {"true" if ok else "false"}'] + [f'"{name}": {text}' for name, text in fields.items()]
    return ("{" + ", ".join(members) + "}").encode()


def nested_json(levels):
    return "[" * levels + "1" + "]" * levels


@pytest.mark.parametrize("payload, reason, detail", [
    pytest.param(answer_payload(True, result=nested_json(33)), "too_deep", "the result nests deeper than 32 levels",
                 id="33-levels"),
    pytest.param(answer_payload(True, result=nested_json(300)), "too_deep", "the result nests deeper than 32 levels",
                 id="300-levels-beyond-what-frames-encode"),
    pytest.param(answer_payload(True, result=nested_json(1000)), "too_deep", "the result nests deeper than 32 levels",
                 id="1000-levels"),
    pytest.param(answer_payload(True, result='{"log": ["ok", "a\\u0000b"]}'), "bad_result",
                 "result.log[1]: text holds a NUL", id="nul-in-result"),
    pytest.param(answer_payload(True, result='{"a\\u0000": 1}'), "bad_result",
                 "result: a key that is not text without NUL", id="nul-in-result-key"),
    pytest.param(answer_payload(True, result=f'{{"big": {2**60}}}'), "bad_result", "result.big: an integer beyond",
                 id="integer-over-2-53"),
    pytest.param(answer_payload(False, error='"disk\\u0000full"'), "bad_result", "error: text holds a NUL",
                 id="nul-in-error"),
    pytest.param(answer_payload(True, result='{"huge": 1e300}'), "bad_result", "result.huge: a number beyond",
                 id="float-beyond-2-53-which-jsonb-reads-back-as-a-301-digit-integer"),
])
def test_a_result_the_hub_cannot_keep_is_refused_and_fails_its_command(payload, reason, detail):
    refused = rejection(parse_command_result, payload, LIMIT)
    assert isinstance(refused, RefusedResult)
    assert refused.reason == reason
    assert detail in refused.detail
    assert refused.failure == CommandResult(
        COMMAND_ID, False, error=f"the device's result was refused: {reason}: {refused.detail}"
    )


def test_a_result_too_deep_to_parse_is_refused_without_a_command_to_fail():
    payload = answer_payload(True, result=nested_json(1100))
    refused = rejection(parse_command_result, payload, LIMIT)
    assert not isinstance(refused, RefusedResult)
    assert refused.reason == "too_deep"


def test_a_command_goes_to_the_device_as_documented():
    assert orjson.loads(command_payload(COMMAND_ID, "set_interval", {"seconds": 5})) == {
        "id": "0b8f3a52-6a1e-4f0e-9a55-3c1f2b7d9e10", "name": "set_interval", "params": {"seconds": 5},
    }


def test_a_device_answering_a_command_round_trips():
    sent = orjson.loads(command_payload(COMMAND_ID, "ping", {}))
    answer = parse_command_result(orjson.dumps({"id": sent["id"], "ok": True, "result": "pong"}), LIMIT)
    assert answer == CommandResult(COMMAND_ID, True, result="pong")
