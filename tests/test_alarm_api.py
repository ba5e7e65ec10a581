"""The alarms API: rules and alarms, as the owner, a group member, another user and staff see them."""
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection, transaction
from django.utils import timezone

from alarms import lifecycle, rules
from alarms.models import Alarm, AlarmChange, AlarmRule, NotificationDestination
from tests.live import wait_until

pytestmark = pytest.mark.postgres

THRESHOLD = {"name": "Boiler too hot", "devices": ["sensor-1"], "kind": "threshold", "key": "temp", "op": ">",
             "value": 80, "clear_value": 75, "for_seconds": 10, "severity": "major"}


@pytest.fixture
def people(make_user, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    watchers = Group.objects.create(name="watchers")
    member = make_user("member")
    member.groups.add(watchers)
    return {
        "owner": make_user("owner"), "member": member, "stranger": make_user("stranger"),
        "staff": make_user("staff", is_staff=True), "watchers": watchers,
    }


@pytest.fixture
def sensor(people, make_device):
    device = make_device("sensor-1", people["owner"])
    device.groups.add(people["watchers"])
    make_device("sensor-2", people["owner"])
    make_device("elsewhere", people["stranger"])
    return device


def as_user(client, user):
    client.force_login(user)
    return client


def call(client, method, path, body=None):
    return client.generic(method, path, orjson.dumps(body) if body is not None else "", content_type="application/json")


def raise_alarm(rule, device_id, value=90):
    alarm, _ = lifecycle.raise_or_count(rule, device_id, crossings=1, last_value=value, at=timezone.now())
    return alarm


@pytest.fixture
def rule(people, sensor):
    made = AlarmRule.objects.create(owner=people["owner"], name="Boiler too hot", kind="threshold", key="temp", op=">", value=80)
    made.devices.set([sensor])
    return made


# Rules.

def test_the_owner_makes_reads_changes_and_deletes_a_rule(client, people, sensor):
    owner = as_user(client, people["owner"])
    made = call(owner, "POST", "/api/alarm-rules/", THRESHOLD)
    assert made.status_code == 201, made.json()
    rule = made.json()
    assert {key: rule[key] for key in THRESHOLD} == {**THRESHOLD, "value": 80.0, "clear_value": 75.0}
    assert (rule["owner"], rule["can_edit"], rule["seconds"]) == ("owner", True, None)
    assert call(owner, "GET", f"/api/alarm-rules/{rule['id']}/").json() == rule
    assert [found["id"] for found in call(owner, "GET", "/api/alarm-rules/").json()] == [rule["id"]]

    changed = call(owner, "PATCH", f"/api/alarm-rules/{rule['id']}/", {"name": "Hot", "severity": "critical"})
    assert changed.status_code == 200
    assert (changed.json()["name"], changed.json()["severity"], changed.json()["value"]) == ("Hot", "critical", 80.0)
    # A change of kind takes the new kind's fields from the body alone.
    offline = call(owner, "PATCH", f"/api/alarm-rules/{rule['id']}/", {"kind": "offline", "seconds": 60}).json()
    assert (offline["kind"], offline["seconds"], offline["key"], offline["op"], offline["value"]) == ("offline", 60, None, None, None)
    assert call(owner, "DELETE", f"/api/alarm-rules/{rule['id']}/").status_code == 204
    assert not AlarmRule.objects.exists()


@pytest.mark.parametrize("body, where", [
    ({**THRESHOLD, "key": None}, "key"),
    ({**THRESHOLD, "op": None}, "op"),
    ({k: v for k, v in THRESHOLD.items() if k != "value"}, "value"),
    ({**THRESHOLD, "op": "=>"}, "op"),
    ({**THRESHOLD, "value": "80"}, "value"),
    ({**THRESHOLD, "value": True}, "value"),
    ({**THRESHOLD, "key": "no spaces"}, "key"),
    ({**THRESHOLD, "clear_value": 85}, "clear_value"),
    ({**THRESHOLD, "op": "==", "clear_value": 80}, "clear_value"),
    ({**THRESHOLD, "seconds": 60}, "seconds"),
    ({**THRESHOLD, "for_seconds": -1}, "for_seconds"),
    ({**THRESHOLD, "severity": "fatal"}, "severity"),
    ({**THRESHOLD, "name": ""}, "name"),
    ({**THRESHOLD, "name": "x" * 201}, "name"),
    ({**THRESHOLD, "name": "nul\x00"}, "name"),
    ({**THRESHOLD, "kind": "flood"}, "kind"),
    ({**THRESHOLD, "devices": ["elsewhere"]}, "devices"),  # another user's: as if it did not exist
    ({**THRESHOLD, "devices": ["nonesuch"]}, "devices"),
    ({**THRESHOLD, "devices": ["bad id!"]}, "devices"),
    ({**THRESHOLD, "devices": [f"d{n}" for n in range(1001)]}, "devices"),
    ({**THRESHOLD, "destinations": list(range(21))}, "destinations"),
    ({"name": "quiet", "kind": "silence", "key": "temp"}, "seconds"),
    ({"name": "quiet", "kind": "silence", "seconds": 0}, "seconds"),
    ({"name": "quiet", "kind": "silence", "seconds": 8 * 86400}, "seconds"),
    ({"name": "gone", "kind": "offline"}, "seconds"),
    ({"name": "gone", "kind": "offline", "seconds": 60, "secs": 60}, "secs"),
    ({"name": "gone", "kind": "offline", "seconds": 60, "key": "temp"}, "key"),
    ({"name": "gone", "kind": "offline", "seconds": 60, "op": ">"}, "op"),
    ({"name": "gone", "kind": "offline", "seconds": 60, "remind_every": -5}, "remind_every"),
    ({"name": "gone", "kind": "offline", "seconds": 60, "notify_raised": None}, "notify_raised"),
])
def test_a_bad_rule_gets_400_naming_the_field(client, people, sensor, body, where):
    response = call(as_user(client, people["owner"]), "POST", "/api/alarm-rules/", body)
    assert response.status_code == 400, response.json()
    assert any(problem["where"].split(".")[-1] == where for problem in response.json()["detail"]), response.json()
    assert not AlarmRule.objects.exists()


def test_a_rule_takes_only_its_owners_destinations(client, people, sensor):
    theirs = NotificationDestination.objects.create(owner=people["stranger"], kind="webhook", url="https://example.com/")
    mine = NotificationDestination.objects.create(owner=people["owner"], kind="email", to=["a@example.com"])
    owner = as_user(client, people["owner"])
    refused = call(owner, "POST", "/api/alarm-rules/", {**THRESHOLD, "destinations": [mine.pk, theirs.pk]})
    assert refused.status_code == 400 and refused.json()["detail"][0]["where"] == "body.rule.destinations"
    made = call(owner, "POST", "/api/alarm-rules/", {**THRESHOLD, "destinations": [mine.pk]})
    assert made.json()["destinations"] == [mine.pk]


def test_a_patch_is_held_to_the_same_rules(client, people, rule):
    owner = as_user(client, people["owner"])
    for body, where in [({"kind": "silence"}, "seconds"), ({"op": None}, "op"), ({"name": None}, "name"),
                        ({"devices": ["elsewhere"]}, "devices"), ({"clear_value": 99}, "clear_value")]:
        response = call(owner, "PATCH", f"/api/alarm-rules/{rule.pk}/", body)
        assert response.status_code == 400, body
        assert response.json()["detail"][0]["where"] == f"body.rule.{where}"
    rule.refresh_from_db()
    assert (rule.kind, rule.op, rule.name) == ("threshold", ">", "Boiler too hot")


def test_a_user_has_a_bounded_number_of_rules(client, people, sensor, monkeypatch):
    monkeypatch.setattr(rules, "MAX_RULES_PER_USER", 2)
    owner = as_user(client, people["owner"])
    assert [call(owner, "POST", "/api/alarm-rules/", THRESHOLD).status_code for _ in range(3)] == [201, 201, 400]
    assert "2 alarm rules" in call(owner, "POST", "/api/alarm-rules/", THRESHOLD).json()["detail"]
    assert AlarmRule.objects.count() == 2


def test_who_may_see_and_change_a_rule(client, people, rule):
    everywhere = AlarmRule.objects.create(owner=people["owner"], name="Any device offline", kind="offline", seconds=60)
    on_sensor_2 = AlarmRule.objects.create(owner=people["owner"], name="Two", kind="offline", seconds=60)
    on_sensor_2.devices.set(["sensor-2"])
    mail = NotificationDestination.objects.create(owner=people["owner"], kind="email", to=["owner@example.com"])
    rule.devices.add("sensor-2")
    rule.destinations.set([mail])
    path = f"/api/alarm-rules/{rule.pk}/"

    member = as_user(client, people["member"])
    # A member sees the rules that cover the device shared with them, and may change none.
    assert sorted(found["id"] for found in call(member, "GET", "/api/alarm-rules/").json()) == [rule.pk, everywhere.pk]
    seen = call(member, "GET", path).json()
    # Of the devices the rule names, the member sees those they may watch; none of its destinations.
    assert (seen["can_edit"], seen["devices"], seen["destinations"]) == (False, ["sensor-1"], [])
    assert call(member, "GET", "/api/alarm-rules/?device=sensor-1").json()[0]["devices"] == ["sensor-1"]
    assert call(member, "PATCH", path, {"name": "mine now"}).status_code == 403
    assert call(member, "DELETE", path).status_code == 403
    assert call(member, "POST", "/api/alarm-rules/", THRESHOLD).json()["detail"][0]["where"] == "body.rule.devices"
    assert call(member, "GET", f"/api/alarm-rules/{on_sensor_2.pk}/").status_code == 404

    stranger = as_user(client, people["stranger"])
    assert call(stranger, "GET", "/api/alarm-rules/").json() == []
    for method in ("GET", "PATCH", "DELETE"):
        assert call(stranger, method, path, {"name": "x"}).status_code == 404
    assert call(stranger, "GET", "/api/alarm-rules/?device=sensor-1").status_code == 404

    staff = as_user(client, people["staff"])
    assert call(staff, "PATCH", path, {"name": "checked by staff"}).json()["can_edit"] is True
    made = call(staff, "POST", "/api/alarm-rules/", {**THRESHOLD, "devices": ["elsewhere"]})
    assert made.status_code == 201 and made.json()["owner"] == "staff"

    owner = as_user(client, people["owner"])
    covering = call(owner, "GET", "/api/alarm-rules/?device=sensor-1").json()
    assert [found["id"] for found in covering] == [rule.pk, everywhere.pk]
    assert (covering[0]["devices"], covering[0]["destinations"]) == (["sensor-1", "sensor-2"], [mail.pk])
    rule.refresh_from_db()
    assert rule.name == "checked by staff"


def test_deleting_a_rule_clears_its_active_alarms_first(client, people, rule, monkeypatch):
    announced = []
    monkeypatch.setattr(lifecycle, "announce", lambda alarm: announced.append((alarm.pk, alarm.state)))
    alarm = raise_alarm(rule, "sensor-1")
    announced.clear()
    assert call(as_user(client, people["owner"]), "DELETE", f"/api/alarm-rules/{rule.pk}/").status_code == 204
    assert announced == [(alarm.pk, "cleared")]
    assert not Alarm.objects.exists()


# Alarms.

def test_alarms_list_newest_first_with_filters(client, people, rule):
    other = AlarmRule.objects.create(owner=people["owner"], name="Gone", kind="offline", seconds=60, severity="critical")
    first = raise_alarm(rule, "sensor-1")
    second = raise_alarm(other, "sensor-2")
    third = raise_alarm(other, "sensor-1")
    lifecycle.clear(first.pk, at=timezone.now())
    lifecycle.acknowledge(third.pk, at=timezone.now(), by=people["owner"])
    owner = as_user(client, people["owner"])

    def ids(query=""):
        response = call(owner, "GET", f"/api/alarms/{query}")
        assert response.status_code == 200, response.json()
        return [alarm["id"] for alarm in response.json()]

    assert ids() == [third.pk, second.pk, first.pk]
    assert ids("?state=active") == [third.pk, second.pk]
    assert ids("?state=cleared") == [first.pk]
    assert ids("?severity=critical") == [third.pk, second.pk]
    assert ids("?device=sensor-2") == [second.pk]
    assert ids("?acknowledged=true") == [third.pk]
    assert ids("?acknowledged=false&state=active") == [second.pk]
    assert ids("?limit=1") == [third.pk]
    assert ids(f"?before={third.pk}&limit=1") == [second.pk]
    for bad in ("?state=open", "?severity=fatal", "?limit=0", "?limit=501", "?acknowledged=maybe"):
        assert call(owner, "GET", f"/api/alarms/{bad}").status_code == 400, bad

    shown = call(owner, "GET", f"/api/alarms/{first.pk}/").json()
    assert shown["rule"] == {"id": rule.pk, "name": "Boiler too hot"}
    assert (shown["device"], shown["severity"], shown["state"], shown["count"], shown["last_value"]) == (
        "sensor-1", "major", "cleared", 1, 90)
    assert shown["raised_at"] <= shown["cleared_at"] and isinstance(shown["raised_at"], int)

    # The member sees sensor-1's alarms only; the stranger none.
    member = as_user(client, people["member"])
    assert [alarm["id"] for alarm in call(member, "GET", "/api/alarms/").json()] == [third.pk, first.pk]
    assert call(member, "GET", f"/api/alarms/{second.pk}/").status_code == 404
    stranger = as_user(client, people["stranger"])
    assert call(stranger, "GET", "/api/alarms/").json() == []
    assert call(stranger, "GET", f"/api/alarms/{first.pk}/").status_code == 404


def test_a_member_acknowledges_and_the_owner_clears(client, people, rule):
    alarm = raise_alarm(rule, "sensor-1")
    path = f"/api/alarms/{alarm.pk}/"
    stranger = as_user(client, people["stranger"])
    assert call(stranger, "POST", path + "acknowledge", {"comment": "mine?"}).status_code == 404
    assert call(stranger, "POST", path + "clear").status_code == 404

    member = as_user(client, people["member"])
    assert call(member, "POST", path + "acknowledge", {"comment": "x" * 1001}).json()["detail"][0]["where"].endswith("comment")
    acknowledged = call(member, "POST", path + "acknowledge", {"comment": "on my way <b>"})
    assert acknowledged.status_code == 200
    assert (acknowledged.json()["acknowledged"], acknowledged.json()["acknowledged_by"]) == (True, "member")
    assert call(member, "POST", path + "acknowledge", {}).status_code == 409
    assert call(member, "POST", path + "clear").status_code == 403

    owner = as_user(client, people["owner"])
    cleared = call(owner, "POST", path + "clear", {"comment": "fixed the valve"})
    assert (cleared.status_code, cleared.json()["state"]) == (200, "cleared")
    assert call(owner, "POST", path + "clear").status_code == 409

    history = call(owner, "GET", path).json()["changes"]
    assert [(change["event"], change["by"], change["comment"]) for change in history] == [
        ("raised", None, ""), ("acknowledged", "member", "on my way <b>"), ("cleared", "owner", "fixed the valve"),
    ]
    assert all(isinstance(change["at"], int) for change in history)
    assert AlarmChange.objects.count() == 3


def test_two_requests_at_once_cannot_both_take_a_users_last_rule(people, sensor, monkeypatch):
    """While one request makes the user's last rule (its transaction holds the user's row), a
    second waits for it, then counts the first's rule and is refused."""
    if connection.vendor == "sqlite":
        pytest.skip("SQLite serialises writers: the race is PostgreSQL's")
    monkeypatch.setattr(rules, "MAX_RULES_PER_USER", 1)
    owner = people["owner"]
    body = {"name": "gone", "kind": "offline", "seconds": 60}
    with ThreadPoolExecutor(1) as pool, transaction.atomic():
        # The first request, under way: the user's row locked, its rule made, not yet committed.
        get_user_model().objects.select_for_update().get(pk=owner.pk)
        AlarmRule.objects.create(owner=owner, name="first", kind="offline", seconds=60)
        second = pool.submit(refused_or_made, owner, body)
        wait_until(waiting_on_a_lock, message="the second request waiting on the first's lock")
    assert second.result(timeout=30) == "refused"
    assert AlarmRule.objects.filter(owner=owner).count() == 1


def waiting_on_a_lock():
    with connection.cursor() as cursor:
        # Within a transaction, the activity view is read once unless its snapshot is cleared.
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        return cursor.fetchone()[0] > 0


def refused_or_made(owner, body):
    try:
        rules.create(owner, body)
        return "made"
    except rules.TooManyRules:
        return "refused"
    finally:
        connection.close()
