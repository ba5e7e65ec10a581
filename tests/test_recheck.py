"""The re-check of open sockets (telemetry.recheck) on the test database: its verdicts, and the
batched access rule it asks (devices.access.watchable_ids_by_user), which must agree with the
rule each page and socket asks. tests/test_socket_access.py proves it over daphne."""
import pytest
from django.contrib.auth import HASH_SESSION_KEY, get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from devices import access
from telemetry.recheck import Grant, StoredSessions, verdicts

pytestmark = pytest.mark.postgres


@pytest.fixture
def world(make_user, make_device, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    people = {name: make_user(name) for name in ("owner", "member", "stranger", "idle")}
    people["staff"] = make_user("staff", is_staff=True)
    people["gone"] = make_user("gone", is_active=False)
    people["gone-staff"] = make_user("gone-staff", is_staff=True, is_active=False)
    group, other_group = Group.objects.create(name="watchers"), Group.objects.create(name="others")
    for name in ("member", "gone"):
        people[name].groups.add(group)
    people["idle"].groups.add(other_group)
    make_device("d1", people["owner"]).groups.add(group)
    make_device("d2", people["owner"])
    make_device("theirs", people["stranger"]).groups.add(other_group)
    return people


def test_the_batched_rule_agrees_with_the_rule_of_every_page_and_socket(world):
    device_ids = ["d1", "d2", "theirs", "nowhere"]
    users = list(get_user_model().objects.all())
    batched = access.watchable_ids_by_user(users, device_ids)
    assert batched == {user.pk: access.watchable_ids(user, device_ids) for user in users}
    assert batched[world["member"].pk] == {"d1"} and batched[world["staff"].pk] == {"d1", "d2", "theirs"}


def session_key_of(user):
    client = Client()
    client.force_login(user)
    return client.session.session_key


def test_a_session_holds_while_it_is_stored_its_user_active_and_their_password_unchanged(world):
    owner, member = world["owner"], world["member"]
    grants = [Grant(session_key_of(owner), owner.pk, frozenset({"d1", "d2"})),
              Grant(session_key_of(member), member.pk, frozenset({"d1", "d2"})),
              Grant(None, member.pk, frozenset({"d1"})),  # a socket without a session: its user alone
              Grant("no-such-session", owner.pk, frozenset({"d1"}))]
    sessions = StoredSessions()
    assert verdicts(grants, sessions) == [{"d1", "d2"}, {"d1"}, {"d1"}, None]
    member.set_password("another-pass!")
    member.save()
    owner.is_active = False
    owner.save()
    assert verdicts(grants, sessions) == [None, None, {"d1"}, None]


def test_a_session_of_another_user_does_not_hold(world):
    grant = Grant(session_key_of(world["owner"]), world["member"].pk, frozenset({"d1"}))
    assert verdicts([grant], StoredSessions()) == [None]


def test_a_recheck_costs_the_same_queries_for_one_socket_or_many(world):
    one = [Grant(session_key_of(world["member"]), world["member"].pk, frozenset({"d1"}))]
    many = [Grant(session_key_of(world[name]), world[name].pk, frozenset({"d1", "d2", "theirs"}))
            for name in ("owner", "member", "stranger", "staff", "idle")] * 20
    counts = []
    for grants in (one, many):
        with CaptureQueriesContext(connection) as queries:
            verdicts(grants, StoredSessions())
        counts.append(len(queries))
    assert counts[0] == counts[1] <= 5


def test_the_session_a_password_was_changed_in_holds_with_its_new_hash(world):
    """django.contrib.auth.update_session_auth_hash writes the new hash into the session the
    password was changed in; the decoded session kept from before must not hide it."""
    member = world["member"]
    changing, other = session_key_of(member), session_key_of(member)
    grants = [Grant(changing, member.pk, frozenset({"d1"})), Grant(other, member.pk, frozenset({"d1"}))]
    sessions = StoredSessions()
    assert verdicts(grants, sessions) == [{"d1"}, {"d1"}]
    member.set_password("another-pass!")
    member.save()
    session = sessions.store_class(changing)
    session[HASH_SESSION_KEY] = member.get_session_auth_hash()
    session.save()
    assert verdicts(grants, sessions) == [{"d1"}, None]
