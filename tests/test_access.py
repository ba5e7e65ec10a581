"""devices.access: owners and staff watch and command; group members only watch; others see nothing."""
import pytest
from django.contrib.auth.models import AnonymousUser, Group

from devices.access import can_command, commandable_devices, visible_devices, watchable_ids

ALL = ["alice-private", "alice-shared", "carol-own", "erin-own"]


@pytest.fixture
def users(make_user, make_device, settings):
    """alice owns two devices, one shared with both of bob's groups; carol owns one; dave is
    staff; erin is inactive."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # five users per test
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    dave, erin = make_user("dave", is_staff=True), make_user("erin", is_active=False)
    watchers, operators = Group.objects.create(name="watchers"), Group.objects.create(name="operators")
    bob.groups.add(watchers, operators)
    make_device("alice-shared", alice).groups.add(watchers, operators)
    make_device("alice-private", alice)
    make_device("carol-own", carol)
    make_device("erin-own", erin)
    return {"alice": alice, "bob": bob, "carol": carol, "dave": dave, "erin": erin, "anonymous": AnonymousUser()}


def ids(devices):
    """The ids of a queryset of devices, in order, duplicates kept."""
    return sorted(devices.values_list("pk", flat=True))


@pytest.mark.parametrize("who, expected", [
    ("alice", ["alice-private", "alice-shared"]),
    ("bob", ["alice-shared"]),
    ("carol", ["carol-own"]),
    ("dave", ALL),
    ("erin", []),
    ("anonymous", []),
])
def test_visible_devices(users, who, expected):
    assert ids(visible_devices(users[who])) == expected


@pytest.mark.parametrize("who, expected", [
    ("alice", ["alice-private", "alice-shared"]),
    ("bob", []),
    ("carol", ["carol-own"]),
    ("dave", ALL),
    ("erin", []),
    ("anonymous", []),
])
def test_commandable_devices(users, who, expected):
    assert ids(commandable_devices(users[who])) == expected


ASKED = ["alice-shared", "alice-private", "carol-own", "ghost"]


@pytest.mark.parametrize("who, asked, expected", [
    ("alice", ASKED, {"alice-private", "alice-shared"}),
    ("bob", ASKED, {"alice-shared"}),
    ("carol", ASKED, {"carol-own"}),
    ("dave", ["alice-shared", "carol-own", "ghost"], {"alice-shared", "carol-own"}),
    ("erin", ASKED + ["erin-own"], set()),
    ("anonymous", ASKED, set()),
])
def test_watchable_ids_are_the_asked_ids_the_user_may_watch(users, who, asked, expected):
    assert watchable_ids(users[who], asked) == expected


def test_watchable_ids_of_nothing_is_nothing(users):
    assert watchable_ids(users["dave"], []) == set()


@pytest.mark.parametrize("who, device_id, allowed", [
    ("alice", "alice-private", True),
    ("alice", "alice-shared", True),
    ("alice", "carol-own", False),
    ("bob", "alice-shared", False),
    ("carol", "alice-shared", False),
    ("dave", "carol-own", True),
    ("dave", "ghost", False),
    ("erin", "erin-own", False),
    ("anonymous", "alice-shared", False),
])
def test_can_command(users, who, device_id, allowed):
    assert can_command(users[who], device_id) is allowed


def test_leaving_the_group_ends_watching(users):
    bob = users["bob"]
    bob.groups.clear()
    assert ids(visible_devices(bob)) == []
