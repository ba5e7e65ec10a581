"""The dashboards' consumers with Channels' own testing kit, on the in-memory channel layer;
tests/test_end_to_end.py covers the same paths over real sockets."""
import asyncio
import threading

import orjson
import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser, Group
from django.test import Client
from django.utils import timezone

from bridge.protocol import Sample
from devices.commands import claim_for_sending
from devices.models import Command, Device
from hub import tasks
from hub.asgi import application as hub_application
from telemetry import consumers, events, relay, snapshots
from telemetry.outbox import MAX_MESSAGE_CHARS, Outbox
from telemetry.relay import relay_for
from telemetry.routing import websocket_urlpatterns
from telemetry.snapshots import device_snapshots
from telemetry.storage import store_samples

application = URLRouter(websocket_urlpatterns)

T0 = 1_764_000_000_000


@pytest.fixture
def people(make_user, make_device, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # four users per test
    owner, member, stranger = make_user("owner"), make_user("member"), make_user("stranger")
    staff = make_user("staff", is_staff=True)
    watchers = Group.objects.create(name="watchers")
    member.groups.add(watchers)
    for device_id in ("d1", "d2"):
        make_device(device_id, owner).groups.add(watchers)
    make_device("theirs", stranger)
    return {"owner": owner, "member": member, "stranger": stranger, "staff": staff}


@pytest.fixture(params=["within-the-snapshot-overlap", "after-it"])
def either_path(request, monkeypatch):
    """Runs a test on both of a socket's ways of taking readings from the relay: one frame at a
    time while it may still skip frames its snapshot holds, queued as they come once that ends."""
    if request.param == "after-it":
        monkeypatch.setattr(consumers, "SNAPSHOT_OVERLAP_SECONDS", 0)


async def connect(path, user):
    communicator = WebsocketCommunicator(application, path)
    communicator.scope["user"] = user
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def publish_readings(device_id, seq, values, ts=T0):
    """What the bridge sends after a flush: the device's frame to every web process's relay."""
    frame = events.readings_frame(device_id, seq, [Sample(ts, values)])
    await get_channel_layer().group_send(events.LIVE_GROUP, events.readings_event([frame]))


async def frames(communicator):
    """The frames of the next websocket message, batches unpacked."""
    message = await communicator.receive_json_from(timeout=2)
    return message["frames"] if message["type"] == "batch" else [message]


async def frames_until(communicator, last):
    """Every frame received up to and including the first for which last(frame) is true."""
    received = await frames(communicator)
    while not last(received[-1]):
        received += await frames(communicator)
    return received


async def error_after(communicator):
    """Sends a frame the socket refuses and returns its error frame: once it has come, every
    frame sent before has been handled."""
    await communicator.send_json_to({"action": "dance"})
    return await communicator.receive_json_from(timeout=2)


# Signing in.


@pytest.mark.parametrize("path", ["/ws/fleet/", "/ws/devices/d1/"])
async def test_a_socket_without_a_signed_in_user_is_closed_with_4401(people, path):
    communicator = await connect(path, AnonymousUser())
    assert await communicator.receive_output(timeout=2) == {"type": "websocket.close", "code": 4401}


@pytest.fixture
def owner_cookie(people, settings):
    """The session cookie of the owner, signed in."""
    client = Client()
    client.force_login(people["owner"])
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


async def test_through_the_hubs_wiring_a_signed_in_session_gets_its_snapshot(owner_cookie):
    communicator = WebsocketCommunicator(
        hub_application, "/ws/devices/d1/", headers=[(b"origin", b"http://localhost"), (b"host", b"localhost"), (b"cookie", owner_cookie)]
    )
    connected, _ = await communicator.connect()
    assert connected
    snapshot = await communicator.receive_json_from(timeout=2)
    assert (snapshot["type"], snapshot["device"]) == ("snapshot", "d1")
    await communicator.disconnect()


async def test_through_the_hubs_wiring_a_socket_without_a_session_is_closed_with_4401(people):
    communicator = WebsocketCommunicator(hub_application, "/ws/fleet/", headers=[(b"origin", b"http://localhost"), (b"host", b"localhost")])
    connected, _ = await communicator.connect()
    assert connected
    assert await communicator.receive_output(timeout=2) == {"type": "websocket.close", "code": 4401}


async def test_through_the_hubs_wiring_a_socket_from_another_origin_is_refused(owner_cookie):
    communicator = WebsocketCommunicator(
        hub_application, "/ws/fleet/", headers=[(b"origin", b"http://evil.example"), (b"host", b"localhost"), (b"cookie", owner_cookie)]
    )
    connected, _ = await communicator.connect()
    assert not connected


# One device: ws/devices/<id>/.


async def test_the_device_socket_sends_a_snapshot_then_live_readings(people):
    communicator = await connect("/ws/devices/d1/", people["owner"])
    snapshot = await communicator.receive_json_from(timeout=2)
    assert (snapshot["type"], snapshot["device"], snapshot["seq"], snapshot["online"]) == ("snapshot", "d1", 0, False)
    await publish_readings("d2", 1, {"temp": 5})  # a device this socket does not watch
    await publish_readings("d1", 1, {"temp": 21.5})
    assert await frames(communicator) == [
        {"type": "readings", "device": "d1", "seq": 1, "items": [{"ts": T0, "values": {"temp": 21.5}}]}
    ]
    await communicator.disconnect()


async def test_the_snapshot_holds_what_is_stored(people):
    received = timezone.now()
    await sync_to_async(store_samples)({"d1": [Sample(T0, {"temp": 21.5, "door": True, "mode": "eco"})]}, received)
    await sync_to_async(Device.objects.filter(pk="d1").update)(online=True, name="Boiler room")
    communicator = await connect("/ws/devices/d1/", people["member"])
    assert await communicator.receive_json_from(timeout=2) == {
        "type": "snapshot", "device": "d1", "name": "Boiler room", "online": True,
        "last_seen": events.to_ms(received), "seq": 1,
        "latest": {"temp": {"ts": T0, "value": 21.5}, "door": {"ts": T0, "value": True}, "mode": {"ts": T0, "value": "eco"}},
    }
    await communicator.disconnect()


async def test_status_and_command_frames_of_the_watched_device_arrive(people):
    communicator = await connect("/ws/devices/d1/", people["member"])
    await communicator.receive_json_from(timeout=2)
    layer = get_channel_layer()
    await layer.group_send(events.LIVE_GROUP, events.status_event("d2", True, T0))
    await layer.group_send(events.LIVE_GROUP, events.status_event("d1", True, T0))
    assert await frames(communicator) == [{"type": "status", "device": "d1", "online": True, "ts": T0}]
    command = await sync_to_async(Command.objects.create)(device_id="d1", name="ping", ttl=60)
    await layer.group_send(events.LIVE_GROUP, events.command_event(command))
    (frame,) = await frames(communicator)
    assert (frame["type"], frame["id"], frame["status"]) == ("command", str(command.pk), "pending")
    await communicator.disconnect()


async def test_a_socket_that_is_not_busy_sends_each_frame_at_once(people, monkeypatch):
    monkeypatch.setattr(consumers.DashboardConsumer, "send_rate", 1 / 3600)  # an hour between sends on average
    communicator = await connect("/ws/devices/d1/", people["owner"])
    await communicator.receive_json_from(timeout=2)
    for seq in (1, 2, 3):  # the burst: none waits for the pace
        await publish_readings("d1", seq, {"n": seq})
        assert [frame["seq"] for frame in await frames(communicator)] == [seq]
    await communicator.disconnect()


async def test_a_busy_socket_batches_what_comes_while_it_waits_its_turn(people, monkeypatch, either_path):
    monkeypatch.setattr(consumers.DashboardConsumer, "send_rate", 0.5)
    communicator = await connect("/ws/devices/d1/", people["owner"])
    await communicator.receive_json_from(timeout=2)
    for seq in (1, 2, 3):
        await publish_readings("d1", seq, {"n": seq})
        await frames(communicator)
    for seq in (4, 5, 6):  # the burst is spent: these wait about two seconds, together
        await publish_readings("d1", seq, {"n": seq})
    message = await communicator.receive_json_from(timeout=10)
    assert message["type"] == "batch" and [frame["seq"] for frame in message["frames"]] == [4, 5, 6]
    await communicator.disconnect()


async def test_frames_no_newer_than_what_the_socket_has_are_skipped(people, either_path):
    communicator = await connect("/ws/devices/d1/", people["owner"])
    await communicator.receive_json_from(timeout=2)
    await publish_readings("d1", 2, {"temp": 2})
    await publish_readings("d1", 2, {"temp": 2})
    await publish_readings("d1", 1, {"temp": 1})
    await publish_readings("d1", 3, {"temp": 3})
    received = await frames_until(communicator, lambda frame: frame["seq"] == 3)
    assert [frame["seq"] for frame in received] == [2, 3]
    await communicator.disconnect()


async def test_frames_the_snapshot_already_reflects_are_skipped(people):
    await sync_to_async(Device.objects.filter(pk="d1").update)(seq=5)
    communicator = await connect("/ws/devices/d1/", people["owner"])
    assert (await communicator.receive_json_from(timeout=2))["seq"] == 5
    await publish_readings("d1", 4, {"temp": 4})
    await publish_readings("d1", 5, {"temp": 5})
    await publish_readings("d1", 6, {"temp": 6})
    received = await frames_until(communicator, lambda frame: frame["seq"] == 6)
    assert [frame["seq"] for frame in received] == [6]
    await communicator.disconnect()


async def test_a_frame_relayed_while_the_snapshot_is_read_is_not_sent_as_well(people, monkeypatch):
    await sync_to_async(Device.objects.filter(pk="d1").update)(seq=5)  # the bridge stored flush 5
    loop = asyncio.get_running_loop()
    layer = get_channel_layer()

    def snapshots_while_flush_5_is_relayed(device_ids):
        """The relay hands the socket flush 5's frame while the snapshot is being read."""
        relayed = threading.Event()

        def relay_flush_5():
            frame = events.readings_frame("d1", 5, [Sample(T0 + 5, {"temp": 5})])
            relay_for(layer).dispatch(events.readings_event([frame]))
            relayed.set()

        loop.call_soon_threadsafe(relay_flush_5)
        assert relayed.wait(timeout=2)
        return device_snapshots(device_ids)

    monkeypatch.setattr(snapshots, "device_snapshots", snapshots_while_flush_5_is_relayed)
    communicator = await connect("/ws/devices/d1/", people["owner"])
    received = await frames_until(communicator, lambda frame: frame["type"] == "snapshot")
    await publish_readings("d1", 6, {"temp": 6}, ts=T0 + 6)
    received += await frames_until(communicator, lambda frame: frame["seq"] == 6)
    assert [(frame["type"], frame["seq"]) for frame in received] == [("snapshot", 5), ("readings", 6)]
    await communicator.disconnect()


@pytest.mark.parametrize("who, device_id", [
    ("owner", "theirs"),
    ("owner", "nowhere"),
    ("member", "theirs"),
    ("stranger", "d1"),
], ids=["another-users", "unknown", "member-elsewhere", "stranger"])
async def test_a_device_the_user_may_not_see_gets_forbidden_and_4403(people, who, device_id):
    communicator = await connect(f"/ws/devices/{device_id}/", people[who])
    error = await communicator.receive_json_from(timeout=2)
    assert (error["type"], error["code"], error["device"]) == ("error", "forbidden", device_id)
    assert await communicator.receive_output(timeout=2) == {"type": "websocket.close", "code": 4403}


async def test_staff_watch_any_device(people):
    communicator = await connect("/ws/devices/theirs/", people["staff"])
    snapshot = await communicator.receive_json_from(timeout=2)
    assert (snapshot["type"], snapshot["device"]) == ("snapshot", "theirs")
    await communicator.disconnect()


@pytest.mark.parametrize("frame, code", [
    ({"action": "subscribe", "devices": ["d2"]}, "unknown_action"),
    ({"action": "command", "device": "d2", "name": "reboot"}, "bad_frame"),
    ({"action": "command"}, "bad_frame"),
], ids=["subscribe", "other-device", "no-name"])
async def test_the_device_socket_takes_commands_for_its_device_only(people, frame, code):
    communicator = await connect("/ws/devices/d1/", people["owner"])
    await communicator.receive_json_from(timeout=2)
    await communicator.send_json_to(frame)
    error = await communicator.receive_json_from(timeout=2)
    assert (error["type"], error["code"]) == ("error", code)
    await communicator.send_json_to({"action": "command", "name": "ping"})
    assert (await communicator.receive_json_from(timeout=2))["type"] == "command"
    assert await sync_to_async(Command.objects.count)() == 1
    await communicator.disconnect()


async def test_a_closed_socket_stops_watching(people):
    communicator = await connect("/ws/devices/d1/", people["owner"])
    await communicator.receive_json_from(timeout=2)
    relay = relay_for(get_channel_layer())
    assert set(relay.watchers) == {"d1"}
    await communicator.disconnect()
    assert dict(relay.watchers) == {}


# Many devices: ws/fleet/.


async def test_the_fleet_socket_refuses_forbidden_devices_and_stays_usable(people):
    communicator = await connect("/ws/fleet/", people["member"])
    await communicator.send_json_to({"action": "subscribe", "devices": ["theirs", "nowhere"]})
    error = await communicator.receive_json_from(timeout=2)
    assert (error["type"], error["code"], sorted(error["devices"])) == ("error", "forbidden", ["nowhere", "theirs"])
    await communicator.send_json_to({"action": "subscribe", "devices": ["d1"]})
    snapshot = await communicator.receive_json_from(timeout=2)
    assert (snapshot["type"], snapshot["device"]) == ("snapshot", "d1")
    await publish_readings("theirs", 1, {"temp": 1})
    await publish_readings("d1", 1, {"temp": 2})
    assert [frame["device"] for frame in await frames(communicator)] == ["d1"]
    await communicator.disconnect()


async def test_a_subscribe_with_some_forbidden_devices_watches_the_others(people):
    communicator = await connect("/ws/fleet/", people["member"])
    await communicator.send_json_to({"action": "subscribe", "devices": ["d1", "theirs"]})
    assert [(f["type"], f["device"]) for f in await frames(communicator)] == [("snapshot", "d1")]
    error = await communicator.receive_json_from(timeout=2)
    assert (error["code"], error["devices"]) == ("forbidden", ["theirs"])
    await communicator.disconnect()


async def test_a_device_already_watched_gets_no_second_snapshot(people):
    communicator = await connect("/ws/fleet/", people["owner"])
    await communicator.send_json_to({"action": "subscribe", "devices": ["d1"]})
    assert (await communicator.receive_json_from(timeout=2))["device"] == "d1"
    await communicator.send_json_to({"action": "subscribe", "devices": ["d1", "d2"]})
    assert [frame["device"] for frame in await frames(communicator)] == ["d2"]
    assert (await error_after(communicator))["code"] == "unknown_action"
    await communicator.disconnect()


@pytest.mark.parametrize("who, expected", [
    ("member", {"d1", "d2"}),
    ("owner", {"d1", "d2"}),
    ("stranger", {"theirs"}),
    ("staff", {"d1", "d2", "theirs"}),
])
async def test_star_subscribes_to_every_device_the_user_may_see(people, who, expected):
    communicator = await connect("/ws/fleet/", people[who])
    await communicator.send_json_to({"action": "subscribe", "devices": "*"})
    snapshots = await frames(communicator)
    assert [frame["type"] for frame in snapshots] == ["snapshot"] * len(expected)
    assert {frame["device"] for frame in snapshots} == expected
    assert (await error_after(communicator))["code"] == "unknown_action"  # no other frame came first
    await communicator.disconnect()


async def test_star_live_frames_cover_every_device_the_user_may_see(people, either_path):
    communicator = await connect("/ws/fleet/", people["member"])
    await communicator.send_json_to({"action": "subscribe", "devices": "*"})
    await frames(communicator)
    await publish_readings("theirs", 1, {"temp": 1})
    await publish_readings("d1", 1, {"temp": 1})
    await publish_readings("d2", 1, {"temp": 2})
    received = await frames_until(communicator, lambda frame: frame["device"] == "d2")
    assert [frame["device"] for frame in received] == ["d1", "d2"]
    await communicator.disconnect()


async def test_unsubscribed_devices_stop_arriving(people, either_path):
    communicator = await connect("/ws/fleet/", people["owner"])
    await communicator.send_json_to({"action": "subscribe", "devices": ["d1", "d2"]})
    assert len(await frames(communicator)) == 2
    await communicator.send_json_to({"action": "unsubscribe", "devices": ["d1"]})
    assert (await error_after(communicator))["code"] == "unknown_action"
    await publish_readings("d1", 1, {"temp": 1})
    await publish_readings("d2", 1, {"temp": 2})
    assert [frame["device"] for frame in await frames(communicator)] == ["d2"]
    await communicator.disconnect()


async def test_unsubscribing_from_star_stops_every_device(people):
    communicator = await connect("/ws/fleet/", people["owner"])
    await communicator.send_json_to({"action": "subscribe", "devices": "*"})
    assert len(await frames(communicator)) == 2
    await communicator.send_json_to({"action": "unsubscribe", "devices": "*"})
    assert (await error_after(communicator))["code"] == "unknown_action"
    await publish_readings("d1", 1, {"temp": 1})
    await publish_readings("d2", 1, {"temp": 2})
    assert await communicator.receive_nothing(timeout=0.2)
    await communicator.disconnect()


@pytest.mark.parametrize("text, code", [
    ("not json", "bad_json"),
    ("{", "bad_json"),
    ("[1, 2]", "bad_frame"),
    ('"subscribe"', "bad_frame"),
    ('{"action": "subscribe"}', "bad_frame"),
    ('{"action": "subscribe", "devices": []}', "bad_frame"),
    ('{"action": "subscribe", "devices": "d1"}', "bad_frame"),
    ('{"action": "subscribe", "devices": ["bad id!"]}', "bad_frame"),
    ('{"action": "subscribe", "devices": [1]}', "bad_frame"),
    ('{"action": "unsubscribe", "devices": {}}', "bad_frame"),
    ('{"action": "command", "name": "reboot"}', "bad_frame"),
    ('{"action": "command", "device": "d1", "name": "re boot"}', "bad_frame"),
    ('{"action": "command", "device": "d1", "name": "reboot", "params": [1]}', "bad_frame"),
    ('{"action": "command", "device": "d1", "name": "reboot", "ttl": 0}', "bad_frame"),
    ('{"action": "command", "device": "d1", "name": "reboot", "ttl": 86401}', "bad_frame"),
    ('{"action": "command", "device": "d1", "name": "reboot", "ttl": "60"}', "bad_frame"),
    ('{"action": "command", "device": "d1", "name": "reboot", "ttl": true}', "bad_frame"),
    ('{"action": "command", "device": "d1", "name": "reboot", "ttl": 1.5}', "bad_frame"),
    ('{"action": "dance"}', "unknown_action"),
    ('{"devices": ["d1"]}', "unknown_action"),
])
async def test_a_malformed_frame_gets_an_error_frame_and_the_socket_stays_usable(people, text, code):
    communicator = await connect("/ws/fleet/", people["owner"])
    await communicator.send_to(text_data=text)
    error = await communicator.receive_json_from(timeout=2)
    assert (error["type"], error["code"]) == ("error", code)
    await communicator.send_json_to({"action": "subscribe", "devices": ["d1"]})
    assert (await communicator.receive_json_from(timeout=2))["type"] == "snapshot"
    assert not await sync_to_async(Command.objects.exists)()
    await communicator.disconnect()


async def test_a_binary_frame_gets_bad_frame_and_the_socket_stays_usable(people):
    communicator = await connect("/ws/fleet/", people["owner"])
    await communicator.send_to(bytes_data=b'{"action": "subscribe", "devices": ["d1"]}')
    error = await communicator.receive_json_from(timeout=2)
    assert (error["type"], error["code"]) == ("error", "bad_frame")
    await communicator.send_json_to({"action": "subscribe", "devices": ["d1"]})
    assert (await communicator.receive_json_from(timeout=2))["type"] == "snapshot"
    await communicator.disconnect()


# Commands.


async def test_a_group_member_may_not_command(people):
    communicator = await connect("/ws/devices/d1/", people["member"])
    await communicator.receive_json_from(timeout=2)
    await communicator.send_json_to({"action": "command", "name": "reboot"})
    error = await communicator.receive_json_from(timeout=2)
    assert (error["type"], error["code"], error["device"]) == ("error", "forbidden", "d1")
    assert not await sync_to_async(Command.objects.exists)()
    await communicator.disconnect()


@pytest.mark.parametrize("who, device_id", [("member", "d1"), ("stranger", "d1"), ("owner", "theirs"), ("owner", "nowhere")])
async def test_a_fleet_command_to_a_device_the_user_may_not_command_is_forbidden(people, who, device_id):
    communicator = await connect("/ws/fleet/", people[who])
    await communicator.send_json_to({"action": "command", "device": device_id, "name": "reboot"})
    error = await communicator.receive_json_from(timeout=2)
    assert (error["type"], error["code"], error["device"]) == ("error", "forbidden", device_id)
    assert (await error_after(communicator))["code"] == "unknown_action"  # still usable
    assert not await sync_to_async(Command.objects.exists)()
    await communicator.disconnect()


async def test_the_owners_command_is_stored_shown_and_handed_to_the_bridge(people):
    communicator = await connect("/ws/devices/d1/", people["owner"])
    await communicator.receive_json_from(timeout=2)
    await communicator.send_json_to({"action": "command", "name": "set_interval", "params": {"seconds": 5}, "ttl": 30})
    (shown,) = await frames(communicator)
    assert (shown["type"], shown["name"], shown["status"], shown["ttl"]) == ("command", "set_interval", "pending", 30)
    command = await sync_to_async(Command.objects.get)(pk=shown["id"])
    assert (command.device_id, command.params, command.created_by_id, command.status) == (
        "d1", {"seconds": 5}, people["owner"].pk, "pending"
    )
    assert await get_channel_layer().receive(events.BRIDGE_COMMANDS_CHANNEL) == {"type": "command.dispatch", "id": shown["id"]}
    await communicator.disconnect()


async def test_a_command_without_params_or_ttl_takes_the_defaults(people, settings):
    settings.COMMAND_DEFAULT_TTL = 45
    communicator = await connect("/ws/devices/d1/", people["owner"])
    await communicator.receive_json_from(timeout=2)
    await communicator.send_json_to({"action": "command", "name": "ping"})
    (shown,) = await frames(communicator)
    assert (shown["params"], shown["ttl"]) == ({}, 45)
    await communicator.disconnect()


@pytest.mark.parametrize("who, device_id", [("owner", "d1"), ("staff", "theirs")])
async def test_a_fleet_command_from_a_socket_not_watching_the_device_is_shown_to_it(people, who, device_id):
    communicator = await connect("/ws/fleet/", people[who])
    await communicator.send_json_to({"action": "command", "device": device_id, "name": "reboot", "ttl": 10})
    shown = await communicator.receive_json_from(timeout=2)
    assert (shown["type"], shown["device"], shown["name"], shown["status"], shown["ttl"]) == (
        "command", device_id, "reboot", "pending", 10
    )
    command = await sync_to_async(Command.objects.get)(pk=shown["id"])
    assert (command.device_id, command.created_by_id) == (device_id, people[who].pk)
    assert await get_channel_layer().receive(events.BRIDGE_COMMANDS_CHANNEL) == {"type": "command.dispatch", "id": shown["id"]}
    await communicator.disconnect()


async def test_the_sender_not_watching_the_device_sees_its_command_change_status(people):
    communicator = await connect("/ws/fleet/", people["owner"])
    await communicator.send_json_to({"action": "command", "device": "d1", "name": "reboot"})
    shown = await communicator.receive_json_from(timeout=2)
    await sync_to_async(Device.objects.filter(pk="d1").update)(online=True)
    command = await sync_to_async(claim_for_sending)(shown["id"], timezone.now())  # what the bridge does
    await get_channel_layer().group_send(events.LIVE_GROUP, events.command_event(command))
    update = await communicator.receive_json_from(timeout=1)
    assert (update["type"], update["id"], update["status"]) == ("command", shown["id"], "sent")
    await communicator.disconnect()



async def test_when_a_followed_command_finishes_every_socket_watching_its_device_gets_the_final_frame(people):
    """The follower stops following while the relay hands the frame out: the others still get it."""
    layer = get_channel_layer()
    follower = await connect("/ws/fleet/", people["owner"])
    await follower.send_json_to({"action": "command", "device": "d1", "name": "reboot"})
    shown = await follower.receive_json_from(timeout=2)
    watchers = [await connect("/ws/devices/d1/", people[who]) for who in ("member", "owner", "staff")]
    for watcher in watchers:
        await watcher.receive_json_from(timeout=2)  # the snapshot
    command = await sync_to_async(Command.objects.get)(pk=shown["id"])
    command.status, command.finished_at = "succeeded", timezone.now()
    relay_for(layer).dispatch(events.command_event(command))  # as the relay's loop does
    for communicator in (follower, *watchers):
        (final,) = await frames(communicator)
        assert (final["id"], final["status"]) == (shown["id"], "succeeded")
    assert len(relay_for(layer).watchers["d1"]) == 3  # the follower's command has ended: it left
    for communicator in (follower, *watchers):
        await communicator.disconnect()
    assert dict(relay_for(layer).watchers) == {}



# Access re-checked on open sockets (telemetry.recheck; tests/test_socket_access.py over daphne).


async def test_a_recheck_closes_the_sockets_of_a_deactivated_user_with_4401_and_forgets_them(people):
    communicator = await connect("/ws/devices/d1/", people["member"])
    await communicator.receive_json_from(timeout=2)
    relay = relay_for(get_channel_layer())
    await relay.recheck.recheck()
    assert set(relay.watchers) == {"d1"}  # nothing changed yet
    await sync_to_async(type(people["member"]).objects.filter(pk=people["member"].pk).update)(is_active=False)
    await relay.recheck.recheck()
    assert await communicator.receive_output(timeout=2) == {"type": "websocket.close", "code": 4401}
    assert dict(relay.watchers) == {} and not relay.recheck.sockets


async def test_a_recheck_takes_devices_no_longer_shared_from_a_fleet_socket_which_goes_on(people):
    communicator = await connect("/ws/fleet/", people["member"])
    await communicator.send_json_to({"action": "subscribe", "devices": ["d1", "d2"]})
    assert len(await frames(communicator)) == 2
    await sync_to_async(lambda: Device.objects.get(pk="d1").groups.clear())()
    relay = relay_for(get_channel_layer())
    await relay.recheck.recheck()
    error = await communicator.receive_json_from(timeout=2)
    assert (error["type"], error["code"], error["devices"]) == ("error", "forbidden", ["d1"])
    assert set(relay.watchers) == {"d2"}
    await publish_readings("d1", 1, {"temp": 1})
    await publish_readings("d2", 1, {"temp": 2})
    assert [frame["device"] for frame in await frames(communicator)] == ["d2"]
    await communicator.disconnect()


# Slow sockets.


async def test_a_slow_socket_holds_a_bounded_number_of_frames_and_is_told_what_it_lost(people, settings, either_path):
    settings.WS_MAX_PENDING_FRAMES = 3
    communicator = await connect("/ws/fleet/", people["owner"])
    await communicator.send_json_to({"action": "subscribe", "devices": ["d1"]})
    await communicator.receive_json_from(timeout=2)
    flush = [events.readings_frame("d1", seq, [Sample(T0 + seq, {"v": seq})]) for seq in range(1, 11)]
    await get_channel_layer().group_send(events.LIVE_GROUP, events.readings_event(flush))
    received = await frames(communicator)
    assert received[0] == {"type": "dropped", "devices": {"d1": 7}}
    assert [frame["seq"] for frame in received[1:]] == [8, 9, 10]
    await communicator.disconnect()


async def test_frames_that_would_make_one_message_too_large_for_daphne_go_out_in_several(people, either_path):
    communicator = await connect("/ws/fleet/", people["owner"])
    await communicator.send_json_to({"action": "subscribe", "devices": ["d1"]})
    await communicator.receive_json_from(timeout=2)
    text = "x" * (MAX_MESSAGE_CHARS // 3)  # three such frames do not fit in one message
    flush = [events.readings_frame("d1", seq, [Sample(T0 + seq, {"s": text})]) for seq in range(1, 5)]
    await get_channel_layer().group_send(events.LIVE_GROUP, events.readings_event(flush))
    seqs = []
    while len(seqs) < 4:
        message = await communicator.receive_output(timeout=2)
        assert len(message["text"]) <= MAX_MESSAGE_CHARS
        sent = orjson.loads(message["text"])
        seqs += [frame["seq"] for frame in (sent["frames"] if sent["type"] == "batch" else [sent])]
    assert seqs == [1, 2, 3, 4]
    await communicator.disconnect()


# A socket's sender crashing (a bug, not an input: no frame is known to do it).


async def test_a_socket_whose_sender_crashes_is_closed_so_its_page_reconnects(people, monkeypatch, caplog):
    def broken_take(outbox):
        raise RuntimeError("a bug in the outbox")

    communicator = await connect("/ws/devices/d1/", people["owner"])
    await communicator.receive_json_from(timeout=2)  # the snapshot
    crashes = tasks.crashes["socket_sender"]
    monkeypatch.setattr(Outbox, "take", broken_take)
    await publish_readings("d1", 1, {"temp": 21.5})
    assert await communicator.receive_output(timeout=2) == {"type": "websocket.close", "code": consumers.SERVER_ERROR}
    assert tasks.crashes["socket_sender"] == crashes + 1
    assert "a socket's sender crashed" in caplog.text and "RuntimeError: a bug in the outbox" in caplog.text


# The live stream breaking and coming back.


async def test_when_the_live_stream_comes_back_after_a_break_each_socket_gets_resync_and_fresh_snapshots(people, monkeypatch):
    monkeypatch.setattr(relay, "PROBE_SECONDS", 0.05)
    monkeypatch.setattr(relay, "PROBE_TIMEOUT", 0.2)
    layer = get_channel_layer()
    communicator = await connect("/ws/devices/d1/", people["owner"])
    assert (await communicator.receive_json_from(timeout=2))["seq"] == 0
    broken = asyncio.Event()
    real_group_send = layer.group_send

    async def group_send_while_redis_is_away(group, message):
        broken.set()
        raise ConnectionError("Redis is away")

    monkeypatch.setattr(layer, "group_send", group_send_while_redis_is_away)
    await asyncio.wait_for(broken.wait(), 2)
    # Meanwhile a reading is stored whose live frame is lost.
    await database_sync_to_async(store_samples)({"d1": [Sample(T0, {"temp": 20.5})]}, timezone.now())
    monkeypatch.setattr(layer, "group_send", real_group_send)

    resync, snapshot = await frames(communicator)
    assert resync == {"type": "resync", "devices": ["d1"]}
    assert (snapshot["type"], snapshot["seq"], snapshot["latest"]["temp"]["value"]) == ("snapshot", 1, 20.5)
    await publish_readings("d1", 2, {"temp": 21.0})
    assert (await communicator.receive_json_from(timeout=2))["seq"] == 2
    await communicator.disconnect()
