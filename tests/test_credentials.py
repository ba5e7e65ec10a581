"""Device passwords and broker accounts: the hashes Mosquitto checks, the files the broker
reads, the commands and API routes that make and revoke them."""
import subprocess
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.test import Client

from devices.broker_auth import render, write_files
from devices.credentials import broker_hash, check_broker_hash, ensure_account, issue_device_token
from devices.models import BrokerAccount, Device
from tests.conftest import PASSWORD
from tests.servers import find_program


def test_mosquitto_passwd_hashes_and_ours_check_each_other(tmp_path):
    path = tmp_path / "passwords"
    subprocess.run([find_program("mosquitto_passwd"), "-b", "-c", str(path), "dev-1", "s3cret"], check=True)
    theirs = path.read_text().strip().split(":", 1)[1]
    assert check_broker_hash("s3cret", theirs)
    assert not check_broker_hash("s3cret!", theirs)
    ours = broker_hash("s3cret")
    assert ours.startswith("$7$101$") and ours != broker_hash("s3cret")  # salted
    assert check_broker_hash("s3cret", ours) and not check_broker_hash("other", ours)


@pytest.mark.parametrize("stored", ["", "plain", "$6$abc$def", "$7$x$y$z", "$7$101$!!$!!"])
def test_a_malformed_stored_hash_never_matches(stored):
    assert not check_broker_hash("anything", stored)


@pytest.mark.parametrize("username", ["hub.bridge", "gateway.site-1", "a.b.c", ".x"])
def test_account_usernames_hold_a_dot(username):
    BrokerAccount._meta.get_field("username").run_validators(username)


@pytest.mark.parametrize("username", ["bridge", "sensor-1", "a:b.c", "with space.x", "a/b.c", "#.x"])
def test_an_account_username_can_never_be_a_device_id_or_break_the_files(username):
    with pytest.raises(ValidationError):
        BrokerAccount._meta.get_field("username").run_validators(username)


@pytest.mark.django_db
def test_the_files_hold_devices_with_passwords_and_the_accounts_with_their_roles(make_user, make_device):
    owner = make_user("owner")
    first, second = make_device("sensor-1", owner), make_device("sensor-2", owner)
    second.password_hash = ""
    second.save()
    ensure_account("hub.bridge", "bridge-password", BrokerAccount.Role.BRIDGE)
    ensure_account("gateway.site", "gateway-password", BrokerAccount.Role.GATEWAY)

    passwords, acl = render()
    logins = dict(line.split(":", 1) for line in passwords.splitlines())
    assert set(logins) == {"sensor-1", "hub.bridge", "gateway.site"}
    assert check_broker_hash(first.mqtt_password, logins["sensor-1"])
    assert check_broker_hash("bridge-password", logins["hub.bridge"])
    assert "pattern write devices/%u/telemetry" in acl and "pattern read devices/%u/commands" in acl
    bridge_block = acl.split("user hub.bridge\n")[1].split("\n\n")[0]
    assert "topic read devices/+/telemetry" in bridge_block and "topic write devices/+/commands" in bridge_block
    gateway_block = acl.split("user gateway.site\n")[1].split("\n\n")[0]
    assert gateway_block.splitlines() == ["topic write devices/+/telemetry", "topic write devices/+/status"]
    assert render() == (passwords, acl)


def test_files_are_replaced_only_when_they_change(tmp_path):
    assert write_files(tmp_path / "auth", "a:hash\n", "acl\n") is True
    before = (tmp_path / "auth" / "passwords").stat().st_ino
    assert write_files(tmp_path / "auth", "a:hash\n", "acl\n") is False
    assert (tmp_path / "auth" / "passwords").stat().st_ino == before
    assert write_files(tmp_path / "auth", "b:hash\n", "acl\n") is True
    assert (tmp_path / "auth" / "passwords").read_text() == "b:hash\n"
    assert sorted(path.name for path in (tmp_path / "auth").iterdir()) == ["acl", "passwords"]


@pytest.mark.django_db
def test_ensure_account_keeps_a_matching_password_and_replaces_another():
    first = ensure_account("hub.bridge", "one", BrokerAccount.Role.BRIDGE)
    assert ensure_account("hub.bridge", "one", BrokerAccount.Role.BRIDGE).changed == first.changed
    second = ensure_account("hub.bridge", "two", BrokerAccount.Role.BRIDGE)
    assert second.pk == first.pk and second.changed > first.changed
    assert check_broker_hash("two", second.password_hash) and not check_broker_hash("one", second.password_hash)


@pytest.mark.django_db
def test_adddevice_prints_a_password_the_broker_will_accept(make_user):
    make_user("owner")
    out = StringIO()
    call_command("adddevice", "boiler-1", "--owner", "owner", stdout=out)
    password = next(line.split()[1] for line in out.getvalue().splitlines() if line.strip().startswith("password:"))
    assert check_broker_hash(password, Device.objects.get(pk="boiler-1").password_hash)


@pytest.mark.django_db
def test_devicetoken_rotates_and_revokes(make_user, make_device):
    device = make_device("boiler-1", make_user("owner"))
    out = StringIO()
    call_command("devicetoken", "rotate", "boiler-1", stdout=out)
    password = out.getvalue().split("password: ")[1].strip()
    device.refresh_from_db()
    assert check_broker_hash(password, device.password_hash)
    assert not check_broker_hash(device.mqtt_password, device.password_hash)
    call_command("devicetoken", "revoke", "boiler-1", stdout=StringIO())
    device.refresh_from_db()
    assert device.password_hash == "" and not device.can_connect
    with pytest.raises(CommandError, match="No device"):
        call_command("devicetoken", "rotate", "ghost")


@pytest.mark.django_db
def test_brokeraccount_makes_an_account_and_refuses_a_device_like_name():
    out = StringIO()
    call_command("brokeraccount", "gateway.site-1", "--role", "gateway", stdout=out)
    password = out.getvalue().splitlines()[-1].strip()
    assert check_broker_hash(password, BrokerAccount.objects.get(username="gateway.site-1").password_hash)
    with pytest.raises(CommandError):
        call_command("brokeraccount", "sensor-1", "--role", "gateway")


@pytest.fixture
def people(make_user, make_device):
    from django.contrib.auth.models import Group

    owner, member, stranger = make_user("owner"), make_user("member"), make_user("stranger")
    staff = make_user("staff", is_staff=True)
    group = Group.objects.create(name="watchers")
    member.groups.add(group)
    device = make_device("boiler-1", owner)
    device.groups.add(group)
    return {"owner": owner, "member": member, "stranger": stranger, "staff": staff, "anonymous": None}


@pytest.mark.parametrize(
    "who, rotate, revoke",
    [("owner", 201, 204), ("staff", 201, 204), ("member", 403, 403), ("stranger", 404, 404), ("anonymous", 401, 401)],
)
def test_only_who_may_command_a_device_may_manage_its_password(people, who, rotate, revoke):
    client = Client()
    if people[who] is not None:
        client.login(username=people[who].username, password=PASSWORD)
    before = Device.objects.get(pk="boiler-1").password_hash

    response = client.post("/api/devices/boiler-1/credentials")
    assert response.status_code == rotate
    after = Device.objects.get(pk="boiler-1").password_hash
    if rotate == 201:
        assert response.json()["username"] == "boiler-1"
        assert check_broker_hash(response.json()["password"], after)
    else:
        assert after == before and "password" not in response.json()

    assert client.delete("/api/devices/boiler-1/credentials").status_code == revoke
    assert (Device.objects.get(pk="boiler-1").password_hash == "") == (revoke == 204)


@pytest.mark.django_db
def test_a_new_password_is_unknown_to_the_old_hash(make_user, make_device):
    device = make_device("boiler-1", make_user("owner"))
    old = device.mqtt_password
    new = issue_device_token(device)
    assert new != old and new.startswith("dvt_")
    assert check_broker_hash(new, device.password_hash) and not check_broker_hash(old, device.password_hash)


@pytest.mark.django_db
def test_the_admin_rotates_and_revokes_device_passwords(make_user, make_device):
    make_user("root", is_staff=True, is_superuser=True)
    device = make_device("boiler-1", make_user("owner"))
    client = Client()
    client.login(username="root", password=PASSWORD)
    url = "/admin/devices/device/"

    response = client.post(url, {"action": "rotate_password", "_selected_action": ["boiler-1"]}, follow=True)
    shown = [str(message) for message in response.context["messages"]]
    password = shown[0].split("new MQTT password ")[1].split()[0]
    device.refresh_from_db()
    assert check_broker_hash(password, device.password_hash)

    client.post(url, {"action": "revoke_password", "_selected_action": ["boiler-1"]})
    device.refresh_from_db()
    assert device.password_hash == ""
