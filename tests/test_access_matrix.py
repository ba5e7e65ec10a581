"""Who may do what, for every route and every websocket action: the owner, a member of a group
the device is shared with (may watch, may not command), another user, staff, and anonymous.

The routes are read from the URL resolver and the API's schema, and the websocket actions from
telemetry.frames.ACTIONS: a new route or action without a row here fails
test_every_route_and_action_has_a_row. Most rows go through Django's test client and Channels'
communicator against the hub's real wiring (hub.urls, hub.asgi); the last tests repeat a few
over a real daphne.
"""
import re

import orjson
import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone
from django.urls import URLPattern, get_resolver
from websockets.exceptions import ConnectionClosed

from accounts.tokens import issue_token
from alarms import lifecycle
from alarms.models import Alarm, AlarmRule, NotificationDestination
from devices.commands import create_command
from devices.models import Command
from hub.api import api
from hub.asgi import application
from telemetry.frames import ACTIONS
from telemetry.routing import websocket_urlpatterns
from tests.conftest import PASSWORD
from tests.live import unique_id

ROLES = ("owner", "member", "other", "staff", "anonymous")
DEVICE = "sensor-1"


def expect(owner, member, other, staff, anonymous):
    return dict(zip(ROLES, (owner, member, other, staff, anonymous)))


@pytest.fixture
def world(make_user, make_device, settings):
    """`owner` owns DEVICE, shared with `member`'s group, one command to it, an alarm rule on it
    and an active alarm; `other` owns `other-1`; `staff` is staff. Each signed-in role has an
    API token too."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    users = {role: make_user(role, is_staff=role == "staff") for role in ROLES if role != "anonymous"}
    group = Group.objects.create(name="watchers")
    users["member"].groups.add(group)
    make_device(DEVICE, users["owner"]).groups.add(group)
    make_device("other-1", users["other"])
    command = create_command(DEVICE, users["owner"], "ping", {}, 60)
    token, _ = issue_token(users["owner"], "page")
    rule = make_rule(users["owner"])
    alarm, _ = lifecycle.raise_or_count(rule, DEVICE, crossings=1, last_value=90, at=timezone.now())
    destination = make_destination(users["owner"])
    return {
        "users": users,
        "tokens": {role: issue_token(user, "matrix")[1] for role, user in users.items()},
        "values": {
            "device_id": DEVICE, "command_id": str(command.pk), "token_id": str(token.pk),
            "rule_id": str(rule.pk), "alarm_id": str(alarm.pk), "destination_id": str(destination.pk),
        },
    }


def make_rule(owner, pk=None):
    rule = AlarmRule.objects.create(pk=pk, owner=owner, name="too hot", kind="threshold", key="temp", op=">", value=80)
    rule.devices.set([DEVICE])
    return rule


def make_destination(owner, pk=None):
    return NotificationDestination.objects.create(pk=pk, owner=owner, kind="email", to=["ops@example.com"])


# Rows that change what they act on set it back before each role tries: a row's answers then
# tell who may, not who came first.

def rule_back(world):
    if not AlarmRule.objects.filter(pk=world["values"]["rule_id"]).exists():
        make_rule(world["users"]["owner"], pk=world["values"]["rule_id"])


def destination_back(world):
    if not NotificationDestination.objects.filter(pk=world["values"]["destination_id"]).exists():
        make_destination(world["users"]["owner"], pk=world["values"]["destination_id"])


def unacknowledged(world):
    Alarm.objects.filter(pk=world["values"]["alarm_id"]).update(acknowledged=False, acknowledged_by=None)


def active_again(world):
    Alarm.objects.filter(pk=world["values"]["alarm_id"]).update(state=Alarm.State.ACTIVE, cleared_at=None)


# The API: (method, path in the schema) -> the status each role gets, the body sent, and LIST
# or a function that sets the row's object back before each role.

LIST = "lists"  # a 200 whose answer names DEVICE for the owner, member and staff, not for others
# A rule for DEVICE, as a POST or PATCH body.
RULE = {"name": "hot", "devices": [DEVICE], "kind": "threshold", "key": "temp", "op": ">", "value": 80}

API = {
    ("GET", "/api/devices/"): (expect(200, 200, 200, 200, 401), None, LIST),
    ("GET", "/api/devices/{device_id}/"): (expect(200, 200, 404, 200, 401), None, None),
    ("GET", "/api/devices/{device_id}/readings"): (expect(200, 200, 404, 200, 401), None, None),
    ("GET", "/api/devices/{device_id}/commands/"): (expect(200, 200, 404, 200, 401), None, None),
    ("POST", "/api/devices/{device_id}/commands/"): (expect(201, 403, 404, 201, 401), {"name": "reboot"}, None),
    ("GET", "/api/commands/"): (expect(200, 200, 200, 200, 401), None, LIST),
    ("GET", "/api/commands/{command_id}/"): (expect(200, 200, 404, 200, 401), None, None),
    ("POST", "/api/devices/{device_id}/credentials"): (expect(201, 403, 404, 201, 401), None, None),
    ("DELETE", "/api/devices/{device_id}/credentials"): (expect(204, 403, 404, 204, 401), None, None),
    # Rules: made for devices one may command (the member's and other's are a 400 naming
    # `devices`, as for a device that does not exist); seen by whoever may watch a device they
    # cover, changed by their owner and staff.
    ("GET", "/api/alarm-rules/"): (expect(200, 200, 200, 200, 401), None, None),
    ("POST", "/api/alarm-rules/"): (expect(201, 400, 400, 201, 401), RULE, None),
    ("GET", "/api/alarm-rules/{rule_id}/"): (expect(200, 200, 404, 200, 401), None, None),
    ("PATCH", "/api/alarm-rules/{rule_id}/"): (expect(200, 403, 404, 200, 401), {"name": "hotter"}, None),
    ("DELETE", "/api/alarm-rules/{rule_id}/"): (expect(204, 403, 404, 204, 401), None, rule_back),
    # Alarms: seen and acknowledged by whoever may watch the device, cleared by hand by whoever may command it.
    ("GET", "/api/alarms/"): (expect(200, 200, 200, 200, 401), None, LIST),
    ("GET", "/api/alarms/{alarm_id}/"): (expect(200, 200, 404, 200, 401), None, None),
    ("POST", "/api/alarms/{alarm_id}/acknowledge"): (expect(200, 200, 404, 200, 401), {"comment": "seen"}, unacknowledged),
    ("POST", "/api/alarms/{alarm_id}/clear"): (expect(200, 403, 404, 200, 401), None, active_again),
    # Notification destinations: each user's own; anyone else's, staff's too, is a 404.
    ("GET", "/api/notification-destinations/"): (expect(200, 200, 200, 200, 401), None, None),
    ("POST", "/api/notification-destinations/"): (expect(201, 201, 201, 201, 401), {"kind": "email", "to": ["ops@example.com"]}, None),
    ("GET", "/api/notification-destinations/{destination_id}/"): (expect(200, 404, 404, 404, 401), None, None),
    ("GET", "/api/notification-destinations/{destination_id}/deliveries"): (expect(200, 404, 404, 404, 401), None, None),
    ("DELETE", "/api/notification-destinations/{destination_id}/"): (expect(204, 404, 404, 404, 401), None, destination_back),
    ("PATCH", "/api/devices/{device_id}/retention"): (expect(200, 403, 404, 200, 401), {"raw_days": 7}, None),
}

# Pages: (method, route in the URL resolver) -> the status each role gets.

PAGES = {
    ("GET", ""): expect(200, 200, 200, 200, 302),
    ("GET", "devices/<str:device_id>/"): expect(200, 200, 404, 200, 302),
    ("GET", "alarms/"): expect(200, 200, 200, 200, 302),
    ("GET", "account/tokens/"): expect(200, 200, 200, 200, 302),
    # The owner's token: only the owner may revoke it; anyone else learns nothing of it.
    ("POST", "account/tokens/<int:token_id>/revoke/"): expect(302, 404, 404, 404, 302),
    ("GET", "admin/"): expect(302, 302, 302, 200, 302),
}

# Routes open to anyone, and why.
PUBLIC = {
    "healthz": "liveness for health checks; answers {\"ok\": true} and nothing else",
    "readyz": "readiness for health checks: which of the database and Redis answers, nothing else",
    "metrics": "Prometheus metrics: loopback and HUB_METRICS_ALLOWED_IPS only (tests/test_metrics.py)",
    "broker/http/authn": "a clustered broker's login check: its shared secret only, 404 unset (tests/test_broker_http.py)",
    "broker/http/authz": "a clustered broker's ACL check: its shared secret only, 404 unset (tests/test_broker_http.py)",
    "api/openapi.json": "the API's schema: routes and shapes, no data",
    "api/": "django-ninja's root, a 404 for everyone",
}
# Django's own apps, whose routes start so, and why they need no rows.
DJANGOS_OWN = {
    "accounts/": "sign-in, sign-out and password pages; failed sign-ins are limited (tests/test_signin_limits.py)",
    "admin/": "the admin: staff only, by Django's own checks (one row in PAGES)",
}


def resolver_routes(patterns=None, prefix=""):
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLPattern):
            yield route
        else:
            yield from resolver_routes(pattern.url_patterns, route)


def api_routes():
    paths = api.get_openapi_schema()["paths"]
    return {(method.upper(), path) for path, methods in paths.items() for method in methods}


def test_every_route_and_action_has_a_row():
    assert api_routes() == set(API), "a route of the API without a row in API, or a row for no route"
    api_paths = {re.sub(r"\{(\w+)\}", r"<\1>", path)[1:] for _, path in API}
    covered = api_paths | {route for _, route in PAGES}
    missing = [
        route for route in resolver_routes()
        if route not in covered and route not in PUBLIC and not any(route.startswith(app) for app in DJANGOS_OWN)
    ]
    assert missing == [], "routes without a row in PAGES or API, nor in PUBLIC with a reason"
    websocket_routes = {pattern.pattern.regex.pattern for pattern in websocket_urlpatterns}
    assert websocket_routes == set(SOCKETS)
    for route, actions in SOCKETS.items():
        assert {action.split(" ")[0] for action in actions} >= {"connect", *ACTIONS}, route


def client_as(world, role, how):
    if role == "anonymous":
        return Client()
    if how == "token":
        return Client(HTTP_AUTHORIZATION=f"Bearer {world['tokens'][role]}")
    client = Client()
    client.force_login(world["users"][role])
    return client


@pytest.mark.parametrize("how", ["session", "token"])
@pytest.mark.parametrize("method, path", list(API))
def test_api(world, method, path, how):
    expected, body, check = API[(method, path)]
    url = path.format(**world["values"])
    seen = {}
    for role in ROLES:
        if callable(check):
            check(world)
        response = client_as(world, role, how).generic(
            method, url, orjson.dumps(body) if body is not None else "", content_type="application/json"
        )
        seen[role] = response.status_code
        if check == LIST and response.status_code == 200:
            named = {item.get("device", item.get("id")) for item in response.json()}
            assert (DEVICE in named) is (role in ("owner", "member", "staff")), (role, named)
    assert seen == expected


def route_url(route, values):
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda match: values[match.group(1)], route)


@pytest.mark.parametrize("method, route", list(PAGES))
def test_pages(world, method, route):
    url = route_url(route, world["values"])
    seen = {role: client_as(world, role, "session").generic(method, url).status_code for role in ROLES}
    assert seen == PAGES[(method, route)]


def test_only_the_owner_revoked_their_token(world):
    url = route_url("account/tokens/<int:token_id>/revoke/", world["values"])
    for role in ("member", "other", "staff"):
        client_as(world, role, "session").post(url)
    token = world["users"]["owner"].api_tokens.get(pk=world["values"]["token_id"])
    assert token.revoked is None
    client_as(world, "owner", "session").post(url)
    token.refresh_from_db()
    assert token.revoked is not None


# Websockets: route -> action -> what each role gets, told as the frames of the first message
# ("snapshot sensor-1", "error forbidden", "command pending") or the close code.

DEVICE_SOCKET, FLEET_SOCKET = (pattern.pattern.regex.pattern for pattern in websocket_urlpatterns)
CLOSED = "closed 4401"
NOT_WATCHING = "closed 4403"  # the socket of a device the user may not watch never opens for actions

SOCKETS = {
    DEVICE_SOCKET: {
        "connect": expect("snapshot sensor-1", "snapshot sensor-1", "error forbidden", "snapshot sensor-1", CLOSED),
        "command": expect("command pending", "error forbidden", NOT_WATCHING, "command pending", CLOSED),
        "subscribe": expect("error unknown_action", "error unknown_action", NOT_WATCHING, "error unknown_action", CLOSED),
        "unsubscribe": expect("error unknown_action", "error unknown_action", NOT_WATCHING, "error unknown_action", CLOSED),
    },
    FLEET_SOCKET: {
        "connect": expect("open", "open", "open", "open", CLOSED),
        "subscribe": expect("snapshot sensor-1", "snapshot sensor-1", "error forbidden", "snapshot sensor-1", CLOSED),
        "subscribe *": expect(
            "snapshot sensor-1", "snapshot sensor-1", "snapshot other-1", "snapshot other-1; snapshot sensor-1", CLOSED
        ),
        "unsubscribe": expect("nothing", "nothing", "nothing", "nothing", CLOSED),
        "command": expect("command pending", "error forbidden", "error forbidden", "command pending", CLOSED),
    },
}
SOCKET_PATHS = {DEVICE_SOCKET: f"/ws/devices/{DEVICE}/", FLEET_SOCKET: "/ws/fleet/"}
FRAMES = {
    "subscribe": {"action": "subscribe", "devices": [DEVICE]},
    "subscribe *": {"action": "subscribe", "devices": "*"},
    "unsubscribe": {"action": "unsubscribe", "devices": [DEVICE]},
    "command": {"action": "command", "device": DEVICE, "name": "reboot"},
}
PROBE = "not json"  # answered with a bad_json error: what comes before it is the action's answer


def describe(message):
    frames = message["frames"] if message["type"] == "batch" else [message]
    what = {"snapshot": "device", "error": "code", "command": "status"}
    return "; ".join(f"{frame['type']} {frame[what[frame['type']]]}" for frame in frames)


@pytest.fixture
def cookies(world, settings):
    """Each role's session cookie, as a browser sends it."""
    found = {"anonymous": b""}
    for role, user in world["users"].items():
        client = Client()
        client.force_login(user)
        found[role] = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()
    return found


async def socket_outcome(cookie, route, action):
    communicator = WebsocketCommunicator(application, SOCKET_PATHS[route], headers=[
        (b"origin", b"http://localhost"), (b"host", b"localhost"), (b"cookie", cookie),
    ])
    connected, _ = await communicator.connect()
    assert connected
    try:
        return await _outcome(communicator, route, action)
    finally:
        await communicator.disconnect()


async def _outcome(communicator, route, action):
    async def next_message():
        output = await communicator.receive_output(timeout=3)
        if output["type"] == "websocket.close":
            return f"closed {output['code']}"
        return describe(orjson.loads(output["text"]))

    if route == DEVICE_SOCKET:
        first = await next_message()
        if action == "connect" or first != "snapshot sensor-1":
            if first == "error forbidden":
                closed = await next_message()
                return first if action == "connect" else closed
            return first
    elif action == "connect":
        await communicator.send_to(text_data=PROBE)
        answer = await next_message()
        return "open" if answer == "error bad_json" else answer
    await communicator.send_to(text_data=orjson.dumps(FRAMES[action]).decode())
    await communicator.send_to(text_data=PROBE)
    answers = []
    while (answer := await next_message()) != "error bad_json":
        if answer.startswith("closed"):
            return answer
        answers.append(answer)
    return "; ".join(answers) or "nothing"


@pytest.mark.parametrize("route, action", [(route, action) for route, actions in SOCKETS.items() for action in actions])
async def test_websockets(cookies, route, action):
    seen = {role: await socket_outcome(cookies[role], route, action) for role in ROLES}
    assert seen == SOCKETS[route][action]
    if "command" in action:
        commands = await sync_to_async(lambda: sorted(Command.objects.filter(name="reboot").values_list("created_by_name", flat=True)))()
        assert commands == sorted(role for role, outcome in seen.items() if outcome.startswith("command pending"))


# A few rows again over a real daphne, signed in through the sign-in page.

LIVE_API = {
    ("GET", "api/devices/{device}/"): expect(200, 200, 404, 200, 401),
    ("POST", "api/devices/{device}/commands/"): expect(201, 403, 404, 201, 401),
    ("POST", "api/devices/{device}/credentials"): expect(201, 403, 404, 201, 401),
    ("DELETE", "api/devices/{device}/credentials"): expect(204, 403, 404, 204, 401),
}


@pytest.fixture
def live_world(live_hub, make_user, make_device):
    """The same roles, with names of their own: the hub's processes share the test database."""
    names = {role: unique_id(role) for role in ROLES if role != "anonymous"}
    users = {role: make_user(name, is_staff=role == "staff") for role, name in names.items()}
    group = Group.objects.create(name=unique_id("watchers"))
    users["member"].groups.add(group)
    device = make_device(unique_id("sensor"), users["owner"])
    device.groups.add(group)
    cookies = {role: live_hub.login(name, PASSWORD) for role, name in names.items()}
    return device.pk, {**cookies, "anonymous": None}


@pytest.mark.live
@pytest.mark.parametrize("method, path", list(LIVE_API))
def test_api_over_daphne(live_hub, live_world, method, path):
    device_id, cookies = live_world
    body = {"name": "reboot"} if path.endswith("commands/") else None
    url = path.format(device=device_id)
    seen = {role: live_hub.api(method, url, cookies[role], body).status for role in ROLES}
    assert seen == LIVE_API[(method, path)]


@pytest.mark.live
def test_device_socket_over_daphne(live_hub, live_world):
    device_id, cookies = live_world
    seen = {}
    for role in ROLES:
        socket = live_hub.dashboard(f"ws/devices/{device_id}/", cookies[role]).socket
        try:
            first = orjson.loads(socket.recv(timeout=10))
        except ConnectionClosed as closed:
            seen[role] = f"closed {closed.rcvd.code}"
            continue
        seen[role] = f"{first['type']} {first.get('code', first.get('device') == device_id)}"
        if first["type"] == "error":
            with pytest.raises(ConnectionClosed) as closed:
                socket.recv(timeout=10)
            seen[role] += f", closed {closed.value.rcvd.code}"
        socket.close()
    assert seen == expect("snapshot True", "snapshot True", "error forbidden, closed 4403", "snapshot True", "closed 4401")
