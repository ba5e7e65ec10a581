"""What dashboards may send over their websocket (docs/protocol.md), as telemetry/frames.py parses it."""
import orjson
import pytest

from telemetry.frames import (
    ALL_DEVICES,
    MAX_DEVICES_PER_FRAME,
    MAX_FRAME_BYTES,
    FrameError,
    SendCommand,
    Subscribe,
    Unsubscribe,
    parse_client_frame,
)


def frame(**fields):
    """A client frame as the browser sends it: JSON text."""
    return orjson.dumps(fields).decode()


def refusal(data, default_device=None):
    """The FrameError parse_client_frame raises for `data`."""
    with pytest.raises(FrameError) as caught:
        parse_client_frame(data, default_device)
    return caught.value


@pytest.fixture(autouse=True)
def command_ttls(settings):
    """The documented defaults, whatever the environment running the tests sets."""
    settings.COMMAND_DEFAULT_TTL = 60
    settings.COMMAND_MAX_TTL = 86400


# Frames that are accepted

@pytest.mark.parametrize("data, expected", [
    pytest.param(frame(action="subscribe", devices=["d1", "d2"]), Subscribe(frozenset({"d1", "d2"})), id="subscribe"),
    pytest.param(frame(action="subscribe", devices=["d1", "d1"]), Subscribe(frozenset({"d1"})),
                 id="subscribe-duplicates-once"),
    pytest.param(frame(action="subscribe", devices="*"), Subscribe(ALL_DEVICES), id="subscribe-star"),
    pytest.param(frame(action="subscribe", devices=["*"]), Subscribe(ALL_DEVICES), id="subscribe-star-in-list"),
    pytest.param(frame(action="subscribe", devices=["a" * 64, "B_2", "boiler-1"]),
                 Subscribe(frozenset({"a" * 64, "B_2", "boiler-1"})), id="subscribe-every-id-character"),
    pytest.param(frame(action="subscribe", devices=["d1"], since=41), Subscribe(frozenset({"d1"})),
                 id="subscribe-extra-fields-ignored"),
    pytest.param(frame(action="unsubscribe", devices=["d1"]), Unsubscribe(frozenset({"d1"})), id="unsubscribe"),
    pytest.param(frame(action="unsubscribe", devices="*"), Unsubscribe(ALL_DEVICES), id="unsubscribe-star"),
    pytest.param(frame(action="command", device="d1", name="reboot", params={}, ttl=60),
                 SendCommand("d1", "reboot", {}, 60, 60), id="command"),
    pytest.param(frame(action="command", device="d1", name="set_interval", params={"seconds": 5}, ttl=1),
                 SendCommand("d1", "set_interval", {"seconds": 5}, 1, 60), id="command-with-params-and-shortest-ttl"),
    pytest.param(frame(action="command", device="d1", name="fw.update-2", ttl=86400),
                 SendCommand("d1", "fw.update-2", {}, 86400, 60), id="command-longest-ttl-params-default-empty"),
    pytest.param(frame(action="command", device="d1", name="ping"), SendCommand("d1", "ping", {}, 60, 60),
                 id="command-default-ttl"),
    pytest.param(' { "action" : "subscribe" , "devices" : [ "d1" ] } ', Subscribe(frozenset({"d1"})),
                 id="whitespace-around-json"),
])
def test_valid_frames_become_actions(data, expected):
    assert parse_client_frame(data) == expected


def test_a_subscribe_may_name_the_most_devices_allowed():
    devices = [f"sensor-{n}" for n in range(MAX_DEVICES_PER_FRAME)]
    assert parse_client_frame(frame(action="subscribe", devices=devices)) == Subscribe(frozenset(devices))


def test_the_default_ttl_and_the_longest_come_from_settings(settings):
    settings.COMMAND_DEFAULT_TTL = 15
    settings.COMMAND_MAX_TTL = 300
    assert parse_client_frame(frame(action="command", device="d1", name="ping")).ttl == 15
    assert parse_client_frame(frame(action="command", device="d1", name="ping", ttl=300)).ttl == 300
    refused = refusal(frame(action="command", device="d1", name="ping", ttl=301))
    assert (refused.code, refused.detail) == ("bad_frame", "ttl must be whole seconds from 1 to 300")


@pytest.mark.parametrize("data, expected", [
    pytest.param(frame(action="command", name="reboot"), SendCommand("boiler-1", "reboot", {}, 60, 60),
                 id="device-left-out"),
    pytest.param(frame(action="command", device="boiler-1", name="reboot", ttl=5),
                 SendCommand("boiler-1", "reboot", {}, 5, 60), id="same-device-named"),
])
def test_a_command_on_the_one_device_socket_goes_to_that_device(data, expected):
    assert parse_client_frame(data, default_device="boiler-1") == expected


# Frames that are refused

@pytest.mark.parametrize("data, detail", [
    pytest.param("subscribe d1", "line 1 column 1 (char 0)", id="plain-text"),
    pytest.param('{"action": "subscribe", "devices": ["d1"]', "unexpected end of data", id="truncated"),
    pytest.param("{'action': 'subscribe', 'devices': ['d1']}", "line 1 column 2 (char 1)", id="single-quotes"),
    pytest.param('{"action": "command", "device": "d1", "name": "x", "ttl": NaN}', "line 1 column 59 (char 58)",
                 id="NaN"),
    pytest.param('{"action": "subscribe", "devices": ["d1",]}', "trailing comma", id="trailing-comma"),
    pytest.param('{"action": "subscribe", "devices": ["\ud800"]}', "surrogates", id="lone-surrogate"),
    pytest.param("", "empty", id="empty"),
])
def test_text_that_is_not_json_is_bad_json(data, detail):
    refused = refusal(data)
    assert refused.code == "bad_json"
    assert detail in refused.detail


@pytest.mark.parametrize("data, detail", [
    pytest.param(b'{"action": "subscribe", "devices": ["d1"]}', "send JSON in text frames", id="binary-frame"),
    pytest.param('["subscribe", "d1"]', "a frame is a JSON object with an action", id="a-list"),
    pytest.param('"subscribe"', "a frame is a JSON object with an action", id="a-string"),
    pytest.param("null", "a frame is a JSON object with an action", id="null"),
    pytest.param("42", "a frame is a JSON object with an action", id="a-number"),
])
def test_frames_that_are_not_json_objects_in_text_are_bad_frames(data, detail):
    refused = refusal(data)
    assert (refused.code, refused.detail) == ("bad_frame", detail)


def test_a_frame_over_the_limit_is_refused_before_it_is_parsed():
    data = frame(action="subscribe", devices=["d1"], note="x" * MAX_FRAME_BYTES)
    refused = refusal(data)
    assert (refused.code, refused.detail) == ("bad_frame", "frames are limited to 65536 bytes")
    assert refusal("[" * (MAX_FRAME_BYTES + 1)).code == "bad_frame"


def test_the_frame_limit_counts_bytes_not_characters():
    data = frame(action="command", device="d1", name="display", params={"text": "\u20ac" * 30000})
    assert len(data) < MAX_FRAME_BYTES < len(data.encode())
    assert refusal(data).code == "bad_frame"


@pytest.mark.parametrize("data", [
    pytest.param(frame(devices=["d1"]), id="action-missing"),
    pytest.param(frame(action="watch", devices=["d1"]), id="unknown-word"),
    pytest.param(frame(action="Subscribe", devices=["d1"]), id="wrong-case"),
    pytest.param(frame(action=" subscribe", devices=["d1"]), id="leading-space"),
    pytest.param(frame(action=None, devices=["d1"]), id="null"),
    pytest.param(frame(action=["subscribe"], devices=["d1"]), id="a-list"),
    pytest.param(frame(action=1, devices=["d1"]), id="a-number"),
    pytest.param(frame(type="subscribe", devices=["d1"]), id="type-instead-of-action"),
    pytest.param("{}", id="empty-object"),
])
def test_a_frame_without_a_known_action_is_unknown_action(data):
    refused = refusal(data)
    assert (refused.code, refused.detail) == ("unknown_action", "action must be subscribe, unsubscribe or command")


@pytest.mark.parametrize("action", ["subscribe", "unsubscribe"])
@pytest.mark.parametrize("devices, detail", [
    pytest.param(None, 'devices must be a list of device ids, or "*"', id="null"),
    pytest.param([], 'devices must be a list of device ids, or "*"', id="empty-list"),
    pytest.param("d1", 'devices must be a list of device ids, or "*"', id="one-id-not-in-a-list"),
    pytest.param("all", 'devices must be a list of device ids, or "*"', id="all-instead-of-star"),
    pytest.param({"d1": True}, 'devices must be a list of device ids, or "*"', id="an-object"),
    pytest.param(7, 'devices must be a list of device ids, or "*"', id="a-number"),
    pytest.param(["d1", 7], "not a device id: '7'", id="a-number-in-the-list"),
    pytest.param(["d1", None], "not a device id: 'None'", id="null-in-the-list"),
    pytest.param([["d1"]], "not a device id: \"['d1']\"", id="nested-list"),
    pytest.param(["boiler 1"], "not a device id: 'boiler 1'", id="space-in-id"),
    pytest.param(["d1/status"], "not a device id: 'd1/status'", id="slash-in-id"),
    pytest.param(["d.1"], "not a device id: 'd.1'", id="dot-in-id"),
    pytest.param([""], "not a device id: ''", id="empty-id"),
    pytest.param(["a" * 65], "not a device id: '" + "a" * 65 + "'", id="65-character-id"),
    pytest.param(["d1\n"], "not a device id: 'd1\\n'", id="trailing-newline"),
    pytest.param(["*", "d1"], "not a device id: '*'", id="star-beside-ids"),
])
def test_a_bad_device_list_is_a_bad_frame_naming_what_is_wrong(action, devices, detail):
    refused = refusal(frame(action=action, devices=devices))
    assert (refused.code, refused.detail) == ("bad_frame", detail)


@pytest.mark.parametrize("action", ["subscribe", "unsubscribe"])
def test_devices_left_out_is_a_bad_frame(action):
    refused = refusal(frame(action=action))
    assert (refused.code, refused.detail) == ("bad_frame", 'devices must be a list of device ids, or "*"')


def test_a_frame_naming_too_many_devices_is_a_bad_frame():
    devices = [f"sensor-{n}" for n in range(MAX_DEVICES_PER_FRAME + 1)]
    refused = refusal(frame(action="subscribe", devices=devices))
    assert (refused.code, refused.detail) == ("bad_frame", "at most 1000 devices in one frame")


def test_a_long_bad_device_id_is_shortened_in_the_detail():
    refused = refusal(frame(action="subscribe", devices=["x!" * 1000]))
    assert refused.detail == f"not a device id: {('x!' * 40)!r}"


DEVICE_DETAIL = "device must be a device id"
NAME_DETAIL = "name must be 1-64 of A-Z a-z 0-9 _ . -"
PARAMS_DETAIL = "params must be an object"
TTL_DETAIL = "ttl must be whole seconds from 1 to 86400"


@pytest.mark.parametrize("fields, detail", [
    pytest.param({"name": "reboot"}, DEVICE_DETAIL, id="device-missing"),
    pytest.param({"device": None, "name": "reboot"}, DEVICE_DETAIL, id="device-null"),
    pytest.param({"device": 7, "name": "reboot"}, DEVICE_DETAIL, id="device-a-number"),
    pytest.param({"device": ["d1"], "name": "reboot"}, DEVICE_DETAIL, id="device-a-list"),
    pytest.param({"device": "*", "name": "reboot"}, DEVICE_DETAIL, id="device-star"),
    pytest.param({"device": "boiler 1", "name": "reboot"}, DEVICE_DETAIL, id="device-with-space"),
    pytest.param({"device": "a" * 65, "name": "reboot"}, DEVICE_DETAIL, id="device-65-characters"),
    pytest.param({"device": "d1"}, NAME_DETAIL, id="name-missing"),
    pytest.param({"device": "d1", "name": ""}, NAME_DETAIL, id="name-empty"),
    pytest.param({"device": "d1", "name": "re boot"}, NAME_DETAIL, id="name-with-space"),
    pytest.param({"device": "d1", "name": "reboot;rm"}, NAME_DETAIL, id="name-with-semicolon"),
    pytest.param({"device": "d1", "name": "n" * 65}, NAME_DETAIL, id="name-65-characters"),
    pytest.param({"device": "d1", "name": 5}, NAME_DETAIL, id="name-a-number"),
    pytest.param({"device": "d1", "name": {"reboot": True}}, NAME_DETAIL, id="name-an-object"),
    pytest.param({"device": "d1", "name": "set_interval", "params": [5]}, PARAMS_DETAIL, id="params-a-list"),
    pytest.param({"device": "d1", "name": "set_interval", "params": "seconds=5"}, PARAMS_DETAIL,
                 id="params-a-string"),
    pytest.param({"device": "d1", "name": "set_interval", "params": '{"seconds": 5}'}, PARAMS_DETAIL,
                 id="params-json-in-a-string"),
    pytest.param({"device": "d1", "name": "set_interval", "params": None}, PARAMS_DETAIL, id="params-null"),
    pytest.param({"device": "d1", "name": "ping", "ttl": 0}, TTL_DETAIL, id="ttl-zero"),
    pytest.param({"device": "d1", "name": "ping", "ttl": -60}, TTL_DETAIL, id="ttl-negative"),
    pytest.param({"device": "d1", "name": "ping", "ttl": 86401}, TTL_DETAIL, id="ttl-over-the-longest"),
    pytest.param({"device": "d1", "name": "ping", "ttl": 60.5}, TTL_DETAIL, id="ttl-fractional"),
    pytest.param({"device": "d1", "name": "ping", "ttl": 60.0}, TTL_DETAIL, id="ttl-a-float"),
    pytest.param({"device": "d1", "name": "ping", "ttl": "60"}, TTL_DETAIL, id="ttl-a-string"),
    pytest.param({"device": "d1", "name": "ping", "ttl": True}, TTL_DETAIL, id="ttl-true"),
    pytest.param({"device": "d1", "name": "ping", "ttl": None}, TTL_DETAIL, id="ttl-null"),
])
def test_a_malformed_command_is_a_bad_frame_naming_the_field(fields, detail):
    refused = refusal(frame(action="command", **fields))
    assert (refused.code, refused.detail) == ("bad_frame", detail)


@pytest.mark.parametrize("device", [
    pytest.param("d2", id="another-device"),
    pytest.param(None, id="null"),
    pytest.param("*", id="star"),
])
def test_the_one_device_socket_refuses_a_command_for_another_device(device):
    refused = refusal(frame(action="command", device=device, name="reboot"), default_device="boiler-1")
    assert (refused.code, refused.detail) == ("bad_frame", "this socket commands boiler-1 only")


def test_a_frame_error_is_an_exception_carrying_its_detail():
    refused = refusal(frame(action="command", device="d1", name="ping", ttl=0))
    assert str(refused) == TTL_DETAIL
    assert refused.extra == {}
