"""Devices prove who they are: real MQTT clients against Mosquitto run as in production (its
config, run-broker.sh), with the logins and ACL the bridge writes from the registry."""
import re

import pytest

from devices.models import Device as RegisteredDevice
from telemetry.models import Reading
from tests.conftest import PASSWORD, running_hub
from tests.live import Device, unique_id, wait_until

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

# A budget small enough to exceed in a test: one message a second, sixty at once.
MESSAGES_PER_SECOND = 1
BURST = 60


@pytest.fixture(scope="module")
def hub(django_db_setup, redis_server, mosquitto_server, tmp_path_factory):
    yield from running_hub(
        redis_server, mosquitto_server, tmp_path_factory.mktemp("trust-hub"),
        device_max_messages_per_second=MESSAGES_PER_SECOND,
    )


@pytest.fixture
def cookie(hub, owner):
    return hub.login(owner.username, PASSWORD)


@pytest.fixture
def pair(make_device, owner):
    return make_device(unique_id("a"), owner), make_device(unique_id("b"), owner)


def connected(hub, device, **options):
    return Device(hub.mqtt_url, device.id, device.mqtt_password, **options).connect()


def stored_values(device, key):
    return sorted(Reading.objects.filter(device=device, key=key).values_list("num", flat=True))


def test_anonymous_clients_and_wrong_passwords_are_refused(hub, pair):
    device, _ = pair
    assert Device(hub.mqtt_url, device.id, None).refusal().getName() == "Not authorized"
    assert Device(hub.mqtt_url, device.id, "dvt_guess").refusal().getName() == "Not authorized"
    connected(hub, device).go_offline()  # while its own password works


def test_a_device_publishes_only_as_itself(hub, pair):
    a, b = pair
    sensor = connected(hub, a)
    sensor.publish(f"devices/{b.id}/status", b"online", retain=True)
    sensor.publish(f"devices/{b.id}/telemetry", b'{"n": 1}')
    sensor.send_reading({"n": 2})

    wait_until(lambda: stored_values(a, "n") == [2], message="a's own reading stored")
    wait_until(lambda: RegisteredDevice.objects.get(pk=a.pk).online, message="a online")
    assert stored_values(b, "n") == []
    assert RegisteredDevice.objects.get(pk=b.pk).online is False
    sensor.go_offline()


def test_a_device_cannot_read_another_devices_commands(hub, pair, cookie):
    a, b = pair
    spy, target = connected(hub, a), connected(hub, b)
    spy.client.subscribe(f"devices/{b.id}/commands", qos=1)
    spy.client.subscribe("devices/+/commands", qos=1)
    dashboard = hub.dashboard(f"ws/devices/{b.id}/", cookie)
    dashboard.frame(type="snapshot")
    wait_until(lambda: RegisteredDevice.objects.get(pk=b.pk).online, message="b online")

    dashboard.send(action="command", name="ping", ttl=30)
    assert target.next_command()["name"] == "ping"
    spy.no_command(within=1)
    spy.go_offline()
    target.go_offline()


def test_a_device_cannot_take_over_another_devices_session(hub, pair, cookie):
    a, b = pair
    target = connected(hub, b, clean_session=False)
    intruder = connected(hub, a, client_id=b.id)  # the broker makes its client id its username

    dashboard = hub.dashboard(f"ws/devices/{b.id}/", cookie)
    dashboard.frame(type="snapshot")
    dashboard.send(action="command", name="ping", ttl=30)
    command = target.next_command()
    target.answer(command["id"], result={"pong": 1})
    dashboard.frame(type="command", id=command["id"], status="succeeded")
    assert target.disconnects == 0 and target.client.is_connected()
    intruder.no_command(within=0.5)
    intruder.go_offline()
    target.go_offline()


def test_a_revoked_device_is_dropped_and_cannot_log_in_again(hub, pair, cookie):
    device, _ = pair
    sensor = connected(hub, device)
    response = hub.api("DELETE", f"api/devices/{device.id}/credentials", cookie)
    assert response.status == 204

    wait_until(lambda: sensor.disconnects >= 1 and sensor.refused, message="the broker to drop the revoked device")
    assert sensor.refused.getName() == "Not authorized"
    sensor.client.loop_stop()
    assert Device(hub.mqtt_url, device.id, device.mqtt_password).refusal().getName() == "Not authorized"


def test_a_new_password_replaces_the_old_one(hub, pair, cookie):
    device, _ = pair
    response = hub.api("POST", f"api/devices/{device.id}/credentials", cookie)
    assert response.status == 201
    new_password = response.json()["password"]
    assert response.json()["username"] == device.id

    sensor = Device(hub.mqtt_url, device.id, new_password).connect()
    sensor.send_reading({"n": 7})
    wait_until(lambda: stored_values(device, "n") == [7], message="the reading sent with the new password")
    sensor.go_offline()
    assert Device(hub.mqtt_url, device.id, device.mqtt_password).refusal().getName() == "Not authorized"


def test_devices_log_in_over_tls(hub, pair, mosquitto_server):
    device, _ = pair
    url = f"mqtts://localhost:{mosquitto_server.tls_port}"
    sensor = Device(url, device.id, device.mqtt_password, ca_file=str(mosquitto_server.certs_dir / "ca.crt")).connect()
    sensor.send_reading({"n": 443})
    wait_until(lambda: stored_values(device, "n") == [443], message="the reading sent over TLS")
    sensor.go_offline()


def test_a_noisy_device_is_throttled_and_counted_and_others_do_not_notice(hub, pair, cookie):
    noisy, quiet = pair
    dashboard = hub.dashboard(f"ws/devices/{quiet.id}/", cookie)
    dashboard.frame(type="snapshot")
    loud, calm = connected(hub, noisy), connected(hub, quiet)
    sent = 3 * BURST
    for n in range(sent):
        loud.send_reading({"n": n}, ts=1_764_000_000_000 + n)
    calm.send_reading({"n": -1})

    assert dashboard.frame(type="readings")["items"][0]["values"] == {"n": -1}
    assert stored_values(quiet, "n") == [-1]

    def limited():
        counts = re.findall(r"stats: .*rate_limited=(\d+)", hub.bridge.log())
        return counts and int(counts[-1]) + len(stored_values(noisy, "n")) == sent

    wait_until(limited, message="every noisy message either stored or counted as rate_limited")
    # Its burst covers its "online" status too.
    assert BURST <= 1 + len(stored_values(noisy, "n")) < sent
    assert re.search(rf"dropped a message from device {noisy.id}: rate_limited: over its budget", hub.bridge.log())
    loud.go_offline()
    calm.go_offline()
