"""Access re-checked on open sockets, over real daphne: within 5 s of a user losing the right to
see a device, their open sockets stop getting it (docs/security.md, telemetry.recheck)."""
import pytest
from django.contrib.auth.models import Group
from websockets.exceptions import ConnectionClosed

from tests.conftest import PASSWORD
from tests.live import Device, stop_client, unique_id

pytestmark = [pytest.mark.live, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

# The promise: at most this long after the change.
WITHIN_SECONDS = 5


@pytest.fixture
def shared(make_user, make_device, owner):
    """Two of the owner's devices, each shared with a group of its own that `member` is in."""
    member = make_user(unique_id("member"))
    shared = {"member": member}
    for name in ("device", "other"):
        device = shared[name] = make_device(unique_id(name), owner)
        group = shared[f"{name}_group"] = Group.objects.create(name=unique_id(name))
        device.groups.add(group)
        member.groups.add(group)
    return shared


@pytest.fixture
def sensors(live_hub, shared):
    connected = {
        name: Device(live_hub.mqtt_url, shared[name].id, shared[name].mqtt_password).connect()
        for name in ("device", "other")
    }
    yield connected
    for sensor in connected.values():
        stop_client(sensor.client)


def fleet_of(hub, cookie, *device_ids):
    fleet = hub.dashboard("ws/fleet/", cookie)
    fleet.send(action="subscribe", devices=list(device_ids))
    for device_id in device_ids:
        fleet.frame(type="snapshot", device=device_id)
    return fleet


def closed_with(dashboard, timeout=WITHIN_SECONDS):
    """The close code of the socket, which must close within `timeout` seconds; frames that
    come first are kept in `seen`."""
    with pytest.raises(ConnectionClosed) as closed:
        dashboard.frame(timeout=timeout, type="never")
    return closed.value.rcvd.code


@pytest.mark.parametrize("change", ["deactivated", "password-changed"])
def test_a_user_deactivated_or_whose_password_changed_has_every_socket_closed_with_4401(live_hub, shared, change):
    member = shared["member"]
    cookie = live_hub.login(member.username, PASSWORD)
    fleet = fleet_of(live_hub, cookie, shared["device"].id)
    single = live_hub.dashboard(f"ws/devices/{shared['device'].id}/", cookie)
    single.frame(type="snapshot")
    if change == "deactivated":
        member.is_active = False
    else:
        member.set_password("another-pass!")
    member.save()
    assert closed_with(fleet) == 4401
    assert closed_with(single) == 4401


def test_signing_out_closes_that_sessions_sockets_only(live_hub, shared, sensors):
    member = shared["member"]
    leaving, staying = live_hub.login(member.username, PASSWORD), live_hub.login(member.username, PASSWORD)
    gone = fleet_of(live_hub, leaving, shared["device"].id)
    kept = fleet_of(live_hub, staying, shared["device"].id)
    assert live_hub.api("POST", "accounts/logout/", leaving).status == 200  # to the sign-in page
    assert closed_with(gone) == 4401
    sensors["device"].send_reading({"temp": 1})
    kept.frame(type="readings", device=shared["device"].id)


@pytest.mark.parametrize("change", ["removed-from-the-group", "device-deleted", "device-given-away"])
def test_a_device_the_user_may_no_longer_see_is_forbidden_and_stops_while_the_socket_goes_on(
    live_hub, shared, sensors, make_user, change
):
    member, device, other = shared["member"], shared["device"], shared["other"]
    device_id = device.id  # deleting the device forgets it
    fleet = fleet_of(live_hub, live_hub.login(member.username, PASSWORD), device_id, other.id)
    single = live_hub.dashboard(f"ws/devices/{device_id}/", live_hub.login(member.username, PASSWORD))
    single.frame(type="snapshot")
    staff = make_user(unique_id("staff"), is_staff=True)
    witness = fleet_of(live_hub, live_hub.login(staff.username, PASSWORD), device_id, other.id)
    if change == "removed-from-the-group":
        member.groups.remove(shared["device_group"])
    elif change == "device-deleted":
        device.delete()
    else:
        device.owner = make_user(unique_id("new-owner"))
        device.save()
        device.groups.clear()

    assert fleet.frame(timeout=WITHIN_SECONDS, type="error", code="forbidden")["devices"] == [device_id]
    error = single.frame(timeout=WITHIN_SECONDS, type="error")
    assert (error["code"], error["device"]) == ("forbidden", device_id)
    assert closed_with(single) == 4403
    # The fleet socket goes on with the device its user may still see, and gets no more of the other.
    if change != "device-deleted":
        sensors["device"].send_reading({"temp": 2})
        witness.frame(type="readings", device=device_id)
    sensors["other"].send_reading({"temp": 3})
    witness.frame(type="readings", device=other.id)  # after the other device's, as the relay got them
    fleet.frame(type="readings", device=other.id)
    assert not [frame for frame in fleet.seen if frame["type"] == "readings" and frame["device"] == device_id]


def test_a_socket_following_its_command_to_a_device_given_away_is_told_and_gets_no_more(
    live_hub, shared, sensors, owner, make_user
):
    device = shared["device"]
    fleet = live_hub.dashboard("ws/fleet/", live_hub.login(owner.username, PASSWORD))
    fleet.send(action="command", device=device.id, name="reboot")
    command = fleet.frame(type="command", status="pending")
    assert sensors["device"].next_command()["id"] == command["id"]
    fleet.frame(type="command", status="sent")
    device.owner = make_user(unique_id("new-owner"))
    device.save()
    assert fleet.frame(timeout=WITHIN_SECONDS, type="error", code="forbidden")["devices"] == [device.id]
    witness = live_hub.dashboard(f"ws/devices/{device.id}/", live_hub.login(device.owner.username, PASSWORD))
    witness.frame(type="snapshot")
    sensors["device"].answer(command["id"], result={"rebooted": True})
    witness.frame(type="command", id=command["id"], status="succeeded")
    fleet.no_frame(within=1, type="command", status="succeeded")
