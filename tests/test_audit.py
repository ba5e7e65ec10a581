"""The audit trail of commands: who sent what to which device, when, and how it ended, in the
API (GET /api/commands/) and the admin; the sender's name outlives the sender's account."""
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.utils import timezone

from devices.commands import create_command
from devices.models import Command
from tests.conftest import PASSWORD


@pytest.fixture
def fleet(make_user, make_device, settings):
    """owner's `shared` (watched by member's group) and `private`; stranger's `theirs`; staff."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    people = {name: make_user(name) for name in ("owner", "member", "stranger")}
    people["staff"] = make_user("staff", is_staff=True, is_superuser=True)
    watchers = Group.objects.create(name="watchers")
    people["member"].groups.add(watchers)
    make_device("shared", people["owner"]).groups.add(watchers)
    make_device("private", people["owner"])
    make_device("theirs", people["stranger"])
    return people


def send(device_id, user, name, minutes_ago=0, **params):
    command = create_command(device_id, user, name, params, 60)
    Command.objects.filter(pk=command.pk).update(created=timezone.now() - timedelta(minutes=minutes_ago))
    return command


@pytest.fixture
def commands(fleet):
    """Newest first: what each command is called, by whom, to which device."""
    return [
        send("theirs", fleet["stranger"], "theirs-ping", 1),
        send("private", fleet["staff"], "staff-reboot", 2, force=True),
        send("shared", fleet["owner"], "owner-set", 3, seconds=5),
        send("shared", fleet["owner"], "owner-ping", 4),
    ]


def log(who, fleet, query=""):
    client = Client()
    if who != "anonymous":
        client.force_login(fleet[who])
    return client.get(f"/api/commands/{query}")


@pytest.mark.parametrize("who, names", [
    ("owner", ["staff-reboot", "owner-set", "owner-ping"]),
    ("member", ["owner-set", "owner-ping"]),
    ("stranger", ["theirs-ping"]),
    ("staff", ["theirs-ping", "staff-reboot", "owner-set", "owner-ping"]),
])
def test_each_user_sees_the_commands_of_the_devices_they_may_see(fleet, commands, who, names):
    response = log(who, fleet)
    assert response.status_code == 200
    assert [command["name"] for command in response.json()] == names


def test_anonymous_callers_get_401(fleet, commands):
    assert log("anonymous", fleet).status_code == 401


def test_an_entry_says_who_sent_what_to_which_device_when_and_how_it_ended(fleet, commands):
    Command.objects.filter(pk=commands[2].pk).update(status="succeeded", result={"ok": 1}, finished_at=timezone.now())
    entry = log("owner", fleet, "?device=shared&limit=1").json()[0]
    assert (entry["device"], entry["name"], entry["params"], entry["sent_by"]) == ("shared", "owner-set", {"seconds": 5}, "owner")
    assert (entry["status"], entry["result"]) == ("succeeded", {"ok": 1})
    assert entry["created"] == int(Command.objects.get(pk=commands[2].pk).created.timestamp() * 1000)
    assert entry["finished"] is not None


@pytest.mark.parametrize("query, names", [
    ("?device=shared", ["owner-set", "owner-ping"]),
    ("?device=theirs", []),  # another user's device: nothing, as if it had no commands
    ("?sent_by=staff", ["staff-reboot"]),
    ("?status=pending&limit=2", ["staff-reboot", "owner-set"]),
    ("?status=succeeded", []),
])
def test_filters(fleet, commands, query, names):
    assert [command["name"] for command in log("owner", fleet, query).json()] == names


def test_pages_go_back_with_before(fleet, commands):
    first = log("owner", fleet, "?limit=2").json()
    rest = log("owner", fleet, f"?before={first[-1]['created']}").json()
    assert [command["name"] for command in first + rest] == ["staff-reboot", "owner-set", "owner-ping"]


@pytest.mark.parametrize("query, where", [("?status=lost", "query.status"), ("?limit=501", "query.limit")])
def test_bad_filters_are_a_400_naming_them(fleet, query, where):
    response = log("owner", fleet, query)
    assert response.status_code == 400 and response.json()["detail"][0]["where"] == where


def test_the_senders_name_outlives_their_account(fleet, commands):
    fleet["staff"].delete()
    command = Command.objects.get(pk=commands[1].pk)
    assert (command.created_by, command.created_by_name) == (None, "staff")
    assert log("owner", fleet, "?sent_by=staff").json()[0]["sent_by"] == "staff"


# The admin.


@pytest.fixture
def admin_client(fleet):
    client = Client()
    assert client.login(username="staff", password=PASSWORD)
    return client


def test_the_admin_lists_commands_filtered_by_device_sender_and_status(admin_client, commands):
    url = "/admin/devices/command/"
    assert admin_client.get(url).context["cl"].result_count == 4
    for query, count in [("?device__id__exact=shared", 2), ("?created_by_name=staff", 1), ("?status__exact=pending", 4)]:
        assert admin_client.get(url + query).context["cl"].result_count == count, query
    assert b"staff-reboot" in admin_client.get(url + "?q=reboot").content


def test_the_admin_cannot_add_change_or_delete_commands(admin_client, commands):
    command = commands[0]
    url = f"/admin/devices/command/{command.pk}/change/"
    page = admin_client.get(url)
    assert page.status_code == 200 and b"theirs-ping" in page.content and b'name="_save"' not in page.content
    assert admin_client.post(url, {"name": "forged"}).status_code == 403
    assert admin_client.get("/admin/devices/command/add/").status_code == 403
    assert admin_client.post(f"/admin/devices/command/{command.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Command.objects.get(pk=command.pk).name == "theirs-ping"


# The migration that added the sender's name.


def test_commands_sent_before_the_migration_get_their_senders_name(transactional_db, django_user_model):
    executor = MigrationExecutor(connection)
    executor.migrate([("devices", "0002_broker_credentials")])
    old = executor.loader.project_state([("devices", "0002_broker_credentials")]).apps
    user = old.get_model("auth", "User").objects.create(username="olduser")
    device = old.get_model("devices", "Device").objects.create(id="old-1", owner=user)
    Command = old.get_model("devices", "Command")
    now = timezone.now()
    sent = Command.objects.create(device=device, name="ping", created_by=user, ttl=60, expires_at=now)
    anonymous = Command.objects.create(device=device, name="ping", created_by=None, ttl=60, expires_at=now)

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    from devices.models import Command as NewCommand

    assert NewCommand.objects.get(pk=sent.pk).created_by_name == "olduser"
    assert NewCommand.objects.get(pk=anonymous.pk).created_by_name == ""
