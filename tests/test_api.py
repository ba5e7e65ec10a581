"""The history API, called as the browser (session) and scripts (tokens) call it."""
import csv
import io
import re
import uuid

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.tokens import issue_token, revoke
from bridge.protocol import Sample
from devices.models import Command
from telemetry.events import BRIDGE_COMMANDS_CHANNEL
from telemetry.storage import store_samples
from tests.rollup_helpers import roll_up_everything

T0 = 1_764_000_000_000  # a round epoch-millisecond time, a multiple of 10 s


@pytest.fixture
def people(make_user):
    watchers = Group.objects.create(name="watchers")
    member = make_user("member")
    member.groups.add(watchers)
    return {
        "owner": make_user("owner"),
        "member": member,
        "stranger": make_user("stranger"),
        "staff": make_user("staff", is_staff=True),
        "watchers": watchers,
    }


@pytest.fixture
def sensor(people, make_device):
    device = make_device("sensor-1", people["owner"], name="Boiler room")
    device.groups.add(people["watchers"])
    return device


def client_for(client, user):
    client.force_login(user)
    return client


def store(device, *samples):
    """Stores readings, and rolls them up as the bridge's rollup job would."""
    store_samples({device.pk: [Sample(ts, values) for ts, values in samples]}, timezone.now())
    roll_up_everything()


@pytest.fixture
def owner_client(client, people):
    return client_for(client, people["owner"])


# Who may call what.

ROUTES = [
    ("get", "/api/devices/"),
    ("get", "/api/devices/sensor-1/"),
    ("get", "/api/devices/sensor-1/readings"),
    ("get", "/api/devices/sensor-1/commands/"),
    ("post", "/api/devices/sensor-1/commands/"),
    ("get", f"/api/commands/{uuid.uuid4()}/"),
]


@pytest.mark.parametrize("method, path", ROUTES)
def test_anonymous_callers_get_401(client, sensor, method, path):
    response = getattr(client, method)(path, content_type="application/json")
    assert response.status_code == 401


@pytest.mark.parametrize("method, path", ROUTES[1:])
def test_another_users_device_is_404_as_if_it_did_not_exist(client, sensor, people, method, path):
    response = getattr(client_for(client, people["stranger"]), method)(
        path, {"name": "reboot"} if method == "post" else None, content_type="application/json"
    )
    assert response.status_code == 404


def test_the_device_list_holds_what_each_user_may_see(client, sensor, people, make_device):
    make_device("elsewhere", people["stranger"])
    seen = {}
    for who in ("owner", "member", "stranger", "staff"):
        answer = client_for(client, people[who]).get("/api/devices/").json()
        seen[who] = {device["id"]: device["can_command"] for device in answer}
    assert seen == {
        "owner": {"sensor-1": True},
        "member": {"sensor-1": False},
        "stranger": {"elsewhere": True},
        "staff": {"elsewhere": True, "sensor-1": True},
    }


def test_a_device_carries_its_status_and_latest_values(owner_client, sensor):
    store(sensor, (T0, {"temp": 21.5, "door": True}), (T0 + 1000, {"temp": 22.0, "mode": "eco"}))
    device = owner_client.get("/api/devices/sensor-1/").json()
    assert device["name"] == "Boiler room" and device["online"] is False and device["seq"] == 1
    assert device["latest"] == {
        "temp": {"ts": T0 + 1000, "value": 22.0},
        "door": {"ts": T0, "value": True},
        "mode": {"ts": T0 + 1000, "value": "eco"},
    }


# Readings.


def test_raw_readings_of_a_range_keep_their_types_and_exclude_the_end(owner_client, sensor):
    store(sensor, (T0, {"temp": 20.0, "door": False}), (T0 + 1000, {"temp": 20.5, "door": True}), (T0 + 2000, {"temp": 21.0}))
    answer = owner_client.get(f"/api/devices/sensor-1/readings?keys=temp,door&from={T0}&to={T0 + 2000}").json()
    assert answer["columns"] == ["ts", "value"] and answer["bucket"] is None
    assert (answer["from"], answer["to"]) == (T0, T0 + 2000)
    assert answer["series"] == {
        "temp": {"points": [[T0, 20.0], [T0 + 1000, 20.5]], "truncated": False},
        "door": {"points": [[T0, False], [T0 + 1000, True]], "truncated": False},
    }


def test_without_keys_every_key_the_device_reported_comes_back(owner_client, sensor):
    store(sensor, (T0, {"temp": 20.0, "hum": 40}))
    answer = owner_client.get(f"/api/devices/sensor-1/readings?from={T0}&to={T0 + 1}").json()
    assert sorted(answer["series"]) == ["hum", "temp"]


def test_readings_of_named_keys_do_not_read_the_latest_values(owner_client, sensor):
    """Only a request without keys needs them (to list the device's keys): every history request
    pays for what it reads, and the 15-minute chart's budget is a few milliseconds."""
    store(sensor, (T0, {"temp": 20.0}))
    with CaptureQueriesContext(connection) as queries:
        answer = owner_client.get(f"/api/devices/sensor-1/readings?keys=temp&from={T0}&to={T0 + 1}").json()
    assert answer["series"]["temp"]["points"] == [[T0, 20.0]]
    assert not [query for query in queries if "latestvalue" in query["sql"]]


def test_buckets_hold_min_mean_max_and_count_computed_by_the_database(owner_client, sensor):
    # 10 s buckets: [T0, T0+10 s) holds 1, 2, 6; [T0+10 s, T0+20 s) holds 10; [T0+20 s, ...) is empty.
    store(sensor, (T0, {"v": 1}), (T0 + 4000, {"v": 2}), (T0 + 9999, {"v": 6}), (T0 + 10000, {"v": 10}))
    answer = owner_client.get(f"/api/devices/sensor-1/readings?keys=v&from={T0}&to={T0 + 30000}&bucket=10").json()
    assert answer["columns"] == ["ts", "min", "mean", "max", "count"] and answer["bucket"] == 10
    assert answer["series"]["v"]["points"] == [[T0, 1.0, 3.0, 6.0, 3], [T0 + 10000, 10.0, 10.0, 10.0, 1]]


def test_buckets_leave_out_strings(owner_client, sensor):
    store(sensor, (T0, {"mode": "eco", "door": True}), (T0 + 1000, {"door": False}))
    answer = owner_client.get(f"/api/devices/sensor-1/readings?keys=mode,door&from={T0}&to={T0 + 60000}&bucket=60").json()
    assert answer["series"]["mode"]["points"] == []
    assert answer["series"]["door"]["points"] == [[T0, 0.0, 0.5, 1.0, 2]]


def test_raw_readings_stop_at_the_point_cap_and_say_so(owner_client, sensor, settings):
    settings.API_MAX_POINTS = 10
    store(sensor, *[(T0 + i * 1000, {"v": i}) for i in range(25)])
    answer = owner_client.get(f"/api/devices/sensor-1/readings?keys=v&from={T0}&to={T0 + 60000}").json()
    series = answer["series"]["v"]
    assert series["truncated"] is True
    assert [ts for ts, _ in series["points"]] == [T0 + i * 1000 for i in range(10)]
    rest = owner_client.get(f"/api/devices/sensor-1/readings?keys=v&from={series['points'][-1][0] + 1}&to={T0 + 60000}").json()
    assert rest["series"]["v"]["points"][0] == [T0 + 10000, 10.0]


def test_a_bucket_too_small_for_the_range_is_refused_with_the_bucket_that_fits(owner_client, sensor, settings):
    settings.API_MAX_POINTS = 100
    week = 7 * 86400 * 1000
    response = owner_client.get(f"/api/devices/sensor-1/readings?from={T0}&to={T0 + week}&bucket=60")
    assert response.status_code == 400
    suggested = int(re.search(r"use bucket=(\d+) or more", response.json()["detail"]).group(1))
    assert suggested >= week / 1000 / 100
    store(sensor, *[(T0 + i * 3_600_000, {"v": i}) for i in range(7 * 24)])
    answer = owner_client.get(f"/api/devices/sensor-1/readings?from={T0}&to={T0 + week}&bucket={suggested}").json()
    assert 0 < len(answer["series"]["v"]["points"]) <= 100
    assert sum(point[4] for point in answer["series"]["v"]["points"]) == 7 * 24


@pytest.mark.parametrize("query, reason", [
    (f"from={T0}&to={T0}", "from must be before to"),
    ("bucket=0", "bucket"),
    ("bucket=often", "bucket"),
    ("from=yesterday", "from"),
    ("keys=temp,bad key", "not a key"),
    ("keys=" + ",".join(f"k{i}" for i in range(21)), "1 to 20 keys"),
    ("format=xml", "format"),
])
def test_bad_parameters_get_400_with_a_reason(owner_client, sensor, query, reason):
    response = owner_client.get(f"/api/devices/sensor-1/readings?{query}")
    assert response.status_code == 400
    assert reason in str(response.json()["detail"])


def test_readings_export_as_csv(owner_client, sensor):
    store(sensor, (T0, {"temp": 20.5, "mode": "eco"}))
    response = owner_client.get(f"/api/devices/sensor-1/readings?keys=temp,mode&from={T0}&to={T0 + 1}&format=csv")
    assert response["Content-Type"].startswith("text/csv")
    assert list(csv.reader(io.StringIO(response.content.decode()))) == [
        ["device", "key", "ts", "value"],
        ["sensor-1", "temp", str(T0), "20.5"],
        ["sensor-1", "mode", str(T0), "eco"],
    ]



def test_csv_cells_a_spreadsheet_would_run_as_formulas_are_escaped_and_numbers_stay_numbers(owner_client, sensor):
    """OWASP's CSV injection advice: a cell starting with = + - @ tab or CR gets a leading single
    quote and is quoted, so a spreadsheet shows it as text."""
    formula = '=HYPERLINK("http://evil/","x")'
    store(sensor, (T0, {"note": formula, "temp": -3.5}), (T0 + 1, {"note": "+1"}), (T0 + 2, {"note": "-2"}),
          (T0 + 3, {"note": "@SUM(A1)"}), (T0 + 4, {"note": "\tx"}), (T0 + 5, {"note": "\rx"}), (T0 + 6, {"note": "fine"}))
    response = owner_client.get(f"/api/devices/sensor-1/readings?keys=note,temp&from={T0}&to={T0 + 7}&format=csv")
    lines = response.content.decode().splitlines()
    assert f'"sensor-1","note",{T0},"\'=HYPERLINK(""http://evil/"",""x"")"' in lines
    assert f'"sensor-1","temp",{T0},-3.5' in lines  # a number, unquoted and unescaped
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert [row[3] for row in rows if row[1] == "note"] == [
        "'" + formula, "'+1", "'-2", "'@SUM(A1)", "'\tx", "'\rx", "fine"
    ]


# Commands.


def test_the_owner_sends_a_command_that_reaches_the_bridge_channel(owner_client, sensor):
    response = owner_client.post(
        "/api/devices/sensor-1/commands/", {"name": "set_interval", "params": {"seconds": 5}, "ttl": 30},
        content_type="application/json",
    )
    assert response.status_code == 201
    command = response.json()
    assert (command["device"], command["name"], command["params"], command["status"], command["ttl"]) == (
        "sensor-1", "set_interval", {"seconds": 5}, "pending", 30,
    )
    assert Command.objects.get(pk=command["id"]).created_by.username == "owner"
    message = async_to_sync(get_channel_layer().receive)(BRIDGE_COMMANDS_CHANNEL)
    assert message == {"type": "command.dispatch", "id": command["id"]}


def test_a_group_member_may_watch_but_not_command(client, sensor, people):
    member = client_for(client, people["member"])
    response = member.post("/api/devices/sensor-1/commands/", {"name": "reboot"}, content_type="application/json")
    assert response.status_code == 403
    assert "not command" in response.json()["detail"]
    assert not Command.objects.exists()
    assert member.get("/api/devices/sensor-1/commands/").status_code == 200


@pytest.mark.parametrize("body, where", [
    ({"name": "re boot"}, "name"),
    ({"name": "reboot", "ttl": 0}, "ttl"),
    ({"name": "reboot", "ttl": 10 ** 9}, "ttl"),
    ({"name": "reboot", "params": [1, 2]}, "params"),
    ({}, "name"),
])
def test_a_bad_command_gets_400_naming_the_field(owner_client, sensor, body, where):
    response = owner_client.post("/api/devices/sensor-1/commands/", body, content_type="application/json")
    assert response.status_code == 400
    assert any(where in problem["where"] for problem in response.json()["detail"])
    assert not Command.objects.exists()


def test_commands_are_listed_newest_first_and_fetched_one_by_one(client, sensor, people):
    owner = client_for(client, people["owner"])
    ids = [
        owner.post("/api/devices/sensor-1/commands/", {"name": name}, content_type="application/json").json()["id"]
        for name in ("first", "second", "third")
    ]
    assert [command["id"] for command in owner.get("/api/devices/sensor-1/commands/?limit=2").json()] == ids[:0:-1]
    assert owner.get(f"/api/commands/{ids[0]}/").json()["name"] == "first"
    assert client_for(client, people["member"]).get(f"/api/commands/{ids[0]}/").status_code == 200
    assert client_for(client, people["stranger"]).get(f"/api/commands/{ids[0]}/").status_code == 404
    assert client_for(client, people["stranger"]).get("/api/commands/not-a-uuid/").status_code == 400


# Tokens.


def test_a_token_authenticates_as_its_user_until_revoked(client, sensor, people):
    stored, token = issue_token(people["owner"], "export")
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/devices/sensor-1/", headers=headers).status_code == 200
    assert client.get("/api/devices/", headers={"Authorization": f"Bearer {token}x"}).status_code == 401
    revoke(type(stored).objects.filter(pk=stored.pk))
    assert client.get("/api/devices/sensor-1/", headers=headers).status_code == 401


def test_a_token_posts_commands_without_csrf(client, sensor, people):
    _, token = issue_token(people["owner"], "script")
    response = client.post(
        "/api/devices/sensor-1/commands/", {"name": "ping"}, content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 201


def test_a_strangers_token_cannot_reach_the_device(client, sensor, people):
    _, token = issue_token(people["stranger"], "nosy")
    assert client.get("/api/devices/sensor-1/readings", headers={"Authorization": f"Bearer {token}"}).status_code == 404


def test_the_session_needs_csrf_to_post(sensor, people):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(people["owner"])
    response = browser.post("/api/devices/sensor-1/commands/", {"name": "ping"}, content_type="application/json")
    assert response.status_code in (401, 403)
    assert not Command.objects.exists()


def test_the_openapi_schema_describes_every_route(client):
    schema = client.get("/api/openapi.json").json()
    assert set(schema["paths"]) >= {
        "/api/devices/", "/api/devices/{device_id}/", "/api/devices/{device_id}/readings",
        "/api/devices/{device_id}/commands/", "/api/commands/{command_id}/",
    }
    parameters = {p["name"] for p in schema["paths"]["/api/devices/{device_id}/readings"]["get"]["parameters"]}
    assert parameters >= {"keys", "from", "to", "bucket", "format"}
