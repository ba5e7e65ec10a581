"""Several bridges behave as one hub (docs/reliability.md): each command reaches its device
exactly once and each status change reaches dashboards once, whatever the number of bridges,
also while one restarts. Real bridges on one shared group, daphne, Redis, Mosquitto, a paho
device and a dashboard's websocket; one set of them for the module."""
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from devices.models import Command
from devices.models import Device as RegisteredDevice
from tests.conftest import PASSWORD, running_hub
from tests.live import STARTUP_TIMEOUT, Device, unique_id, wait_until

pytestmark = [pytest.mark.live, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

COMMANDS = 1000


@pytest.fixture(scope="module")
def hub(django_db_setup, redis_server, mosquitto_server, tmp_path_factory):
    """The hub's bridge, and those `bridges()` adds, in a shared group of their own (the
    broker keeps their sessions, and their share, after the module). Their restarts here are
    restarts, not deaths: with the default 10 s lease a slow machine took longer than that to
    bring one back, and a peer drained its session (tests/test_peer_drain.py tests that)."""
    yield from running_hub(redis_server, mosquitto_server, tmp_path_factory.mktemp("hub"),
                           mqtt_shared_group=unique_id("bridges"), bridge_lease_seconds=120)


def bridges(hub, count):
    """Exactly `count` bridges running, each connected: the hub's own and count - 1 others."""
    while len(hub.other_bridges) < count - 1:
        hub.another_bridge(f"bridge-{len(hub.other_bridges) + 2}")
    while len(hub.other_bridges) > count - 1:
        hub.other_bridges.pop().stop()
    running = [hub.bridge, *hub.other_bridges]
    # The test before emptied the registry of the bridges' logins, which they write back within
    # about two seconds; meanwhile the broker may turn one away.
    wait_until(lambda: all(map(connected, running)), timeout=STARTUP_TIMEOUT, message="every bridge connected")
    return running


def connected(bridge):
    """True when the bridge's latest word on its broker connection is that it connected."""
    events = re.findall(r"connected to mqtt://| lost mqtt://|refused the connection", bridge.log())
    return bool(events) and events[-1] == "connected to mqtt://"


def online(hub, device):
    sensor = Device(hub.mqtt_url, device.id, device.mqtt_password).connect()
    wait_until(lambda: RegisteredDevice.objects.get(pk=device.pk).online, message=f"{device.id} online")
    return sensor


@pytest.mark.parametrize("count", [2, 4])
def test_every_command_reaches_its_device_exactly_once_across_bridges(hub, device, owner, count):
    running = bridges(hub, count)
    logs = {bridge.name: len(bridge.log()) for bridge in running}
    cookie = hub.login(owner.username, PASSWORD)
    sensor = online(hub, device)

    def create(n):
        # As a dashboard's page does: each creation asks every bridge to send the command
        # (the channel layer hands it to each), and every bridge's sweep finds it too.
        response = hub.api("POST", f"api/devices/{device.id}/commands/", cookie,
                           {"name": "reboot", "params": {"n": n}, "ttl": 600, "timeout": 600})
        assert response.status == 201, response.body
        return response.json()["id"]

    with ThreadPoolExecutor(4) as pool:
        created = set(pool.map(create, range(COMMANDS)))
    delivered = [sensor.next_command(timeout=30)["id"] for _ in range(COMMANDS)]
    sensor.no_command(within=2)  # a second delivery would come from a second claim: none does

    assert len(delivered) == len(set(delivered)) and set(delivered) == created
    assert Command.objects.filter(device=device, status="sent").count() == COMMANDS
    sent_by = {
        bridge.name: re.findall(rf"sent command (\S+) 'reboot' to {device.id}", bridge.log()[logs[bridge.name]:])
        for bridge in running
    }
    sent = [command_id for ids in sent_by.values() for command_id in ids]
    assert sorted(sent) == sorted(created), {name: len(ids) for name, ids in sent_by.items()}
    sensor.go_offline()


def handled_up_to(bridge, start, bad_statuses):
    """True once the bridge's stats since log offset `start` (where it started) show
    `bad_statuses` bad status messages and none in hand: it handled all it received before."""
    return any(
        int(bad) >= bad_statuses and background == "0"
        for bad, background in re.findall(r"bad_status=(\d+).*? background=(\d+)", bridge.log()[start:])
    )


def last_seen(device):
    return RegisteredDevice.objects.get(pk=device.pk).last_seen


def test_each_status_change_reaches_dashboards_once_with_two_bridges_and_across_restarts(hub, device, owner, make_device):
    first, second = bridges(hub, 2)
    dashboard = hub.dashboard(f"ws/devices/{device.id}/", hub.login(owner.username, PASSWORD))
    dashboard.frame(type="snapshot", online=False)
    # Another device's bad status marks a point in each bridge's stream of status messages.
    beacon = make_device(unique_id("beacon"), owner)
    beacon = Device(hub.mqtt_url, beacon.id, beacon.mqtt_password).connect()

    def restart(*bridges):
        """Starts them again; returns the log offset each started at."""
        starts = []
        for bridge in bridges:
            starts.append(len(bridge.log()))
            bridge.start()
            bridge.wait_for_log(r"connected to mqtt://", timeout=STARTUP_TIMEOUT, start=starts[-1])
        return starts

    def mark(bad_statuses, *since):
        beacon.publish(beacon.topic("status"), b"rebooting")
        for bridge, start in since:
            wait_until(lambda: handled_up_to(bridge, start, bad_statuses), message=f"{bridge.name} handling statuses")

    sensor = Device(hub.mqtt_url, device.id, device.mqtt_password).connect()
    dashboard.frame(type="status", online=True)
    sensor.go_offline()
    dashboard.frame(type="status", online=False)

    # The device comes back while the second bridge is down: the first tells dashboards. Back,
    # the second gets the device's retained status, finds nothing new, and changes nothing.
    second.stop()
    sensor = Device(hub.mqtt_url, device.id, device.mqtt_password).connect()
    dashboard.frame(type="status", online=True)
    seen = last_seen(device)
    (second_start,) = restart(second)
    mark(1, (second, second_start))
    assert RegisteredDevice.objects.get(pk=device.pk).online is True and last_seen(device) == seen

    # The device leaves while every bridge is down: the first back learns it from the retained
    # status and tells dashboards; the second finds nothing to change.
    first.stop()
    second.stop()
    sensor.go_offline()
    first_start, second_start = restart(first, second)
    dashboard.frame(type="status", online=False)
    mark(1, (first, first_start), (second, second_start))

    sensor = Device(hub.mqtt_url, device.id, device.mqtt_password).connect()
    dashboard.frame(type="status", online=True)
    mark(2, (first, first_start), (second, second_start))
    dashboard.no_frame(within=1.5, type="status")

    assert [frame["online"] for frame in dashboard.seen if frame["type"] == "status"] == [True, False, True, False, True]
    assert RegisteredDevice.objects.get(pk=device.pk).online is True and last_seen(device) > seen
    sensor.go_offline()
    beacon.go_offline()
