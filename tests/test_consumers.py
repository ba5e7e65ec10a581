"""The dashboards' consumers with Channels' own testing kit, on the in-memory channel layer;
tests/test_end_to_end.py covers the same paths over real sockets."""
import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser, Group

from bridge.protocol import Sample
from devices.models import Command
from telemetry import events
from telemetry.routing import websocket_urlpatterns

application = URLRouter(websocket_urlpatterns)


@pytest.fixture
def people(make_user, make_device):
    owner, member, stranger = make_user("owner"), make_user("member"), make_user("stranger")
    watchers = Group.objects.create(name="watchers")
    member.groups.add(watchers)
    for device_id in ("d1", "d2"):
        make_device(device_id, owner).groups.add(watchers)
    make_device("theirs", stranger)
    return {"owner": owner, "member": member, "stranger": stranger}


async def connect(path, user):
    communicator = WebsocketCommunicator(application, path)
    communicator.scope["user"] = user
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def publish_readings(device_id, seq, values, ts=1_764_000_000_000):
    """What the bridge sends after a flush: the device's frame to every web process's relay."""
    frame = events.readings_frame(device_id, seq, [Sample(ts, values)])
    await get_channel_layer().group_send(events.LIVE_GROUP, events.readings_event([frame]))


async def frames(communicator):
    """The frames of the next websocket message, batches unpacked."""
    message = await communicator.receive_json_from(timeout=2)
    return message["frames"] if message["type"] == "batch" else [message]


@pytest.mark.parametrize("path", ["/ws/fleet/", "/ws/devices/d1/"])
async def test_a_socket_without_a_signed_in_user_is_closed_with_4401(people, path):
    communicator = await connect(path, AnonymousUser())
    assert await communicator.receive_output(timeout=2) == {"type": "websocket.close", "code": 4401}


async def test_the_device_socket_sends_a_snapshot_then_live_readings(people):
    communicator = await connect("/ws/devices/d1/", people["owner"])
    snapshot = await communicator.receive_json_from(timeout=2)
    assert (snapshot["type"], snapshot["device"], snapshot["seq"], snapshot["online"]) == ("snapshot", "d1", 0, False)
    await publish_readings("d2", 1, {"temp": 5})  # a device this socket does not watch
    await publish_readings("d1", 1, {"temp": 21.5})
    assert await frames(communicator) == [
        {"type": "readings", "device": "d1", "seq": 1, "items": [{"ts": 1_764_000_000_000, "values": {"temp": 21.5}}]}
    ]
    await communicator.disconnect()


async def test_frames_no_newer_than_what_the_socket_has_are_skipped(people):
    communicator = await connect("/ws/devices/d1/", people["owner"])
    await communicator.receive_json_from(timeout=2)
    await publish_readings("d1", 2, {"temp": 2})
    await publish_readings("d1", 2, {"temp": 2})
    await publish_readings("d1", 1, {"temp": 1})
    await publish_readings("d1", 3, {"temp": 3})
    received = (await frames(communicator))
    while received[-1]["seq"] != 3:
        received += await frames(communicator)
    assert [frame["seq"] for frame in received] == [2, 3]
    await communicator.disconnect()


async def test_a_device_the_user_may_not_see_gets_forbidden_and_4403(people):
    communicator = await connect("/ws/devices/theirs/", people["owner"])
    error = await communicator.receive_json_from(timeout=2)
    assert (error["type"], error["code"], error["device"]) == ("error", "forbidden", "theirs")
    assert await communicator.receive_output(timeout=2) == {"type": "websocket.close", "code": 4403}


async def test_the_fleet_socket_refuses_forbidden_devices_and_stays_usable(people):
    communicator = await connect("/ws/fleet/", people["member"])
    await communicator.send_json_to({"action": "subscribe", "devices": ["theirs", "nowhere"]})
    error = await communicator.receive_json_from(timeout=2)
    assert error["code"] == "forbidden" and sorted(error["devices"]) == ["nowhere", "theirs"]
    await communicator.send_json_to({"action": "subscribe", "devices": ["d1"]})
    assert (await communicator.receive_json_from(timeout=2))["device"] == "d1"
    await communicator.disconnect()


async def test_star_subscribes_to_every_device_the_user_may_see(people):
    communicator = await connect("/ws/fleet/", people["member"])
    await communicator.send_json_to({"action": "subscribe", "devices": "*"})
    snapshots = await frames(communicator)
    assert {(frame["type"], frame["device"]) for frame in snapshots} == {("snapshot", "d1"), ("snapshot", "d2")}
    assert await communicator.receive_nothing(timeout=0.2)
    await publish_readings("theirs", 1, {"temp": 1})
    await publish_readings("d2", 1, {"temp": 2})
    assert [frame["device"] for frame in await frames(communicator)] == ["d2"]
    await communicator.disconnect()


async def test_unsubscribed_devices_stop_arriving(people):
    communicator = await connect("/ws/fleet/", people["owner"])
    await communicator.send_json_to({"action": "subscribe", "devices": ["d1", "d2"]})
    assert len(await frames(communicator)) == 2
    await communicator.send_json_to({"action": "unsubscribe", "devices": ["d1"]})
    await communicator.send_json_to({"action": "dance"})  # its error frame shows the unsubscribe was handled
    assert (await communicator.receive_json_from(timeout=2))["code"] == "unknown_action"
    await publish_readings("d1", 1, {"temp": 1})
    await publish_readings("d2", 1, {"temp": 2})
    assert [frame["device"] for frame in await frames(communicator)] == ["d2"]
    await communicator.disconnect()


@pytest.mark.parametrize("text, code", [
    ("not json", "bad_json"),
    ("[1, 2]", "bad_frame"),
    ('{"action": "subscribe", "devices": "d1"}', "bad_frame"),
    ('{"action": "subscribe", "devices": ["bad id!"]}', "bad_frame"),
    ('{"action": "command", "device": "d1", "name": "re boot"}', "bad_frame"),
    ('{"action": "command", "device": "d1", "name": "reboot", "params": [1]}', "bad_frame"),
    ('{"action": "command", "device": "d1", "name": "reboot", "ttl": 0}', "bad_frame"),
    ('{"action": "dance"}', "unknown_action"),
])
async def test_a_malformed_frame_gets_an_error_frame_and_the_socket_stays_usable(people, text, code):
    communicator = await connect("/ws/fleet/", people["owner"])
    await communicator.send_to(text_data=text)
    error = await communicator.receive_json_from(timeout=2)
    assert (error["type"], error["code"]) == ("error", code)
    await communicator.send_json_to({"action": "subscribe", "devices": ["d1"]})
    assert (await communicator.receive_json_from(timeout=2))["type"] == "snapshot"
    await communicator.disconnect()


async def test_a_group_member_may_not_command(people):
    communicator = await connect("/ws/devices/d1/", people["member"])
    await communicator.receive_json_from(timeout=2)
    await communicator.send_json_to({"action": "command", "name": "reboot"})
    error = await communicator.receive_json_from(timeout=2)
    assert (error["code"], error["device"]) == ("forbidden", "d1")
    assert not await sync_to_async(Command.objects.exists)()
    await communicator.disconnect()


async def test_the_owners_command_is_stored_shown_and_handed_to_the_bridge(people):
    communicator = await connect("/ws/devices/d1/", people["owner"])
    await communicator.receive_json_from(timeout=2)
    await communicator.send_json_to({"action": "command", "name": "set_interval", "params": {"seconds": 5}, "ttl": 30})
    (shown,) = await frames(communicator)
    assert (shown["type"], shown["name"], shown["status"], shown["ttl"]) == ("command", "set_interval", "pending", 30)
    command = await sync_to_async(Command.objects.get)(pk=shown["id"])
    assert (command.params, command.created_by_id) == ({"seconds": 5}, people["owner"].pk)
    assert await get_channel_layer().receive(events.BRIDGE_COMMANDS_CHANNEL) == {"type": "command.dispatch", "id": shown["id"]}
    await communicator.disconnect()


async def test_a_slow_socket_holds_a_bounded_number_of_frames_and_is_told_what_it_lost(people, settings):
    settings.WS_MAX_PENDING_FRAMES = 3
    communicator = await connect("/ws/fleet/", people["owner"])
    await communicator.send_json_to({"action": "subscribe", "devices": ["d1"]})
    await communicator.receive_json_from(timeout=2)
    flush = [events.readings_frame("d1", seq, [Sample(1_764_000_000_000 + seq, {"v": seq})]) for seq in range(1, 11)]
    await get_channel_layer().group_send(events.LIVE_GROUP, events.readings_event(flush))
    received = await frames(communicator)
    assert received[0] == {"type": "dropped", "devices": {"d1": 7}}
    assert [frame["seq"] for frame in received[1:]] == [8, 9, 10]
    await communicator.disconnect()
