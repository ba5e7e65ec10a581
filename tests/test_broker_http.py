"""/broker/http/authn and /broker/http/authz: EMQX 5's HTTP authentication and authorization
backends, asked as EMQX asks them (POST, a JSON body of rendered placeholders, a bearer token in
a header), and answering as Mosquitto does with the files rendered from the same registry."""
import queue
import threading

import orjson
import paho.mqtt.client as mqtt
import pytest
from django.test import Client
from paho.mqtt.enums import CallbackAPIVersion

from accounts.tokens import issue_token
from devices.broker_auth import render, write_files
from devices.credentials import ensure_account, revoke_device_token
from devices.models import BrokerAccount
from tests.live import TIMEOUT, stop_client
from tests.servers import MosquittoServer

SECRET = "broker-secret-for-tests"
BRIDGE, GATEWAY = "hub.bridge", "gateway.site"


@pytest.fixture(autouse=True)
def no_failed_logins_from_other_tests():
    """The failure counts live in the cache, process memory here: start each test without any."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def registry(make_user, make_device, settings):
    """sensor-1 with its password, sensor-2 revoked, a bridge and a gateway account: name -> password."""
    settings.BROKER_HTTP_AUTH_TOKEN = SECRET
    owner = make_user("owner")
    first, second = make_device("sensor-1", owner), make_device("sensor-2", owner)
    revoke_device_token(second)
    ensure_account(BRIDGE, "bridge-password", BrokerAccount.Role.BRIDGE)
    ensure_account(GATEWAY, "gateway-password", BrokerAccount.Role.GATEWAY)
    return {"sensor-1": first.mqtt_password, "sensor-2": second.mqtt_password, BRIDGE: "bridge-password",
            GATEWAY: "gateway-password"}


def ask(check, body, token=SECRET, **extra):
    """A request as EMQX sends it: its `body` placeholders rendered as strings, in JSON."""
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token is not None else {}
    data = body if isinstance(body, (str, bytes)) else orjson.dumps(body)
    return Client().post(f"/broker/http/{check}", data, content_type=extra.pop("content_type", "application/json"),
                         **headers, **extra)


def login(username, password, peerhost="10.0.0.7"):
    response = ask("authn", {"clientid": username, "username": username, "password": password, "peerhost": peerhost})
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert response.json()["is_superuser"] is False
    return response.json()["result"]


def may(username, action, topic):
    body = {"clientid": username, "username": username, "topic": topic, "action": action, "qos": "1", "retain": "false"}
    response = ask("authz", body)
    assert response.status_code == 200, response.content
    return response.json()["result"]


@pytest.mark.django_db
def test_the_routes_are_not_there_without_the_setting(settings):
    settings.BROKER_HTTP_AUTH_TOKEN = ""
    assert ask("authn", {"username": "a", "password": "b", "peerhost": "1.2.3.4"}).status_code == 404
    assert ask("authz", {"username": "a", "topic": "t", "action": "publish"}).status_code == 404


@pytest.mark.postgres
def test_only_the_broker_with_the_shared_secret_is_answered(registry, make_user):
    body = {"username": "sensor-1", "password": registry["sensor-1"], "peerhost": "10.0.0.7"}
    _, user_token = issue_token(make_user("someone"), "api")
    for token in (None, "", "wrong", SECRET + "x", user_token, registry["sensor-1"]):
        response = ask("authn", body, token=token)
        assert response.status_code == 401 and "HUB_BROKER_HTTP_AUTH_TOKEN" in response.json()["detail"]
    unschemed = Client().post("/broker/http/authn", orjson.dumps(body), content_type="application/json",
                              HTTP_AUTHORIZATION=SECRET)
    assert unschemed.status_code == 401
    assert Client().get("/broker/http/authn", HTTP_AUTHORIZATION=f"Bearer {SECRET}").status_code == 405


@pytest.mark.postgres
def test_logins_are_the_registrys(registry):
    assert login("sensor-1", registry["sensor-1"]) == "allow"
    assert login("sensor-1", registry["sensor-1"] + "x") == "deny"
    assert login("sensor-2", registry["sensor-2"]) == "deny"  # revoked
    assert login(BRIDGE, "bridge-password") == "allow"
    assert login(GATEWAY, "bridge-password") == "deny"
    assert login("nobody", "anything") == "deny"
    assert login("sensor-1", "") == "deny"


@pytest.mark.postgres
def test_failed_logins_are_limited_like_sign_ins_even_with_the_right_password_next(registry, settings):
    settings.SIGNIN_LIMITS = {"username_and_address": 3, "address": 50, "username": 50}
    for _ in range(3):
        assert login(BRIDGE, "guess", peerhost="10.9.9.9") == "deny"
    assert login(BRIDGE, "bridge-password", peerhost="10.9.9.9") == "deny"
    # The same account from elsewhere, and a web user of the same name, are not locked out.
    assert login(BRIDGE, "bridge-password", peerhost="10.0.0.8") == "allow"
    from accounts import signin_limits

    assert signin_limits.retry_after(BRIDGE, "10.9.9.9") == 0


@pytest.mark.postgres
@pytest.mark.parametrize("username, action, topic, expected", [
    ("sensor-1", "publish", "devices/sensor-1/telemetry", "allow"),
    ("sensor-1", "publish", "devices/sensor-1/status", "allow"),
    ("sensor-1", "publish", "devices/sensor-1/commands/result", "allow"),
    ("sensor-1", "publish", "devices/sensor-1/commands", "deny"),
    ("sensor-1", "publish", "devices/sensor-2/telemetry", "deny"),
    ("sensor-1", "publish", "devices/+/telemetry", "deny"),
    ("sensor-1", "subscribe", "devices/sensor-1/commands", "allow"),
    ("sensor-1", "subscribe", "devices/sensor-1/telemetry", "deny"),
    ("sensor-1", "subscribe", "devices/+/commands", "deny"),
    ("sensor-1", "subscribe", "devices/#", "deny"),
    ("sensor-1", "subscribe", "#", "deny"),
    ("sensor-1", "subscribe", "$SYS/#", "deny"),
    (BRIDGE, "subscribe", "$share/telehub/devices/+/telemetry", "allow"),
    (BRIDGE, "subscribe", "devices/+/status", "allow"),
    (BRIDGE, "subscribe", "devices/sensor-1/commands/result", "allow"),
    (BRIDGE, "subscribe", "devices/#", "deny"),
    (BRIDGE, "subscribe", "devices/+/commands", "deny"),
    (BRIDGE, "publish", "devices/sensor-1/commands", "allow"),
    (BRIDGE, "publish", "devices/sensor-1/telemetry", "deny"),
    (GATEWAY, "publish", "devices/sensor-9/telemetry", "allow"),
    (GATEWAY, "publish", "devices/sensor-9/commands", "deny"),
    (GATEWAY, "subscribe", "devices/+/telemetry", "deny"),
    ("sensor/1", "publish", "devices/sensor/1/telemetry", "deny"),
    ("+", "publish", "devices/+/telemetry", "deny"),
])
def test_topics_are_the_acls(registry, username, action, topic, expected):
    assert may(username, action, topic) == expected


@pytest.mark.django_db
@pytest.mark.parametrize("body, content_type, status, reason", [
    ("{", "application/json", 400, "not JSON"),
    ("[1]", "application/json", 400, "JSON object"),
    ({"username": "a", "password": 5, "peerhost": "x"}, "application/json", 400, "password"),
    ({"password": "a", "peerhost": "x"}, "application/json", 400, "username"),
    ({"username": "a", "password": "b"}, "application/json", 400, "peerhost"),
    ({"username": "a" * 257, "password": "b", "peerhost": "x"}, "application/json", 400, "username is over"),
    ({"username": "a", "password": "b" * 5000, "peerhost": "x"}, "application/json", 413, "4096 bytes"),
    ("username=a&password=b", "application/x-www-form-urlencoded", 415, "JSON"),
    ("[" * 3000 + "]" * 3000, "application/json", 413, "4096 bytes"),
    ("[" * 2000 + "]" * 2000, "application/json", 400, "not JSON"),
])
def test_bad_requests_are_4xx_with_a_reason(settings, body, content_type, status, reason):
    settings.BROKER_HTTP_AUTH_TOKEN = SECRET
    response = ask("authn", body, content_type=content_type)
    assert response.status_code == status and reason in response.json()["detail"]


@pytest.mark.django_db
def test_an_unknown_action_is_a_400_naming_it(settings):
    settings.BROKER_HTTP_AUTH_TOKEN = SECRET
    response = ask("authz", {"username": "a", "topic": "t", "action": "all"})
    assert response.status_code == 400 and "action" in response.json()["detail"]


class Probe:
    """An MQTT 5 client that reports what the broker answered: its CONNACK, each PUBACK, what arrived."""

    def __init__(self, broker, username, password):
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=username, protocol=mqtt.MQTTv5)
        self.client.username_pw_set(username, password)
        self.answered = threading.Event()
        self.refused = None
        self.acks = {}
        self.arrived = queue.Queue()
        self.client.on_connect = self._on_connect
        self.client.on_publish = lambda client, userdata, mid, reason_code, properties: self.acks.__setitem__(mid, reason_code)
        self.client.on_message = lambda client, userdata, message: self.arrived.put(message.topic)
        self.client.connect_async("127.0.0.1", broker.port)
        self.client.loop_start()
        assert self.answered.wait(TIMEOUT), "the broker did not answer the CONNECT"

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.refused = reason_code.is_failure
        if self.refused:
            client.disconnect()
        self.answered.set()

    def published(self, topic, retain=False):
        """True if the broker took the message (PUBACK success), False if it refused it."""
        info = self.client.publish(topic, b"x", qos=1, retain=retain)
        info.wait_for_publish(TIMEOUT)
        return not self.acks[info.mid].is_failure

    def retained(self, topics, marker):
        """Which of `topics` deliver their retained message to this login. Mosquitto answers
        SUBSCRIBEs in order: once `marker`'s (subscribed last) arrives, the others had their turn."""
        for topic in [*topics, marker]:
            self.client.subscribe(topic, qos=1)
        seen = set()
        while marker not in seen:
            seen.add(self.arrived.get(timeout=TIMEOUT))
        return seen - ({marker} - set(topics))

    def close(self):
        stop_client(self.client)


@pytest.mark.postgres
def test_mosquitto_with_the_files_and_the_endpoints_agree(registry, tmp_path):
    broker = MosquittoServer(tmp_path)
    write_files(broker.auth_dir, *render())
    broker.start()
    users = ["sensor-1", "sensor-2", BRIDGE, GATEWAY]
    try:
        for username in [*users, "nobody"]:
            for password in {registry.get(username, "x"), "wrong"}:
                probe = Probe(broker, username, password)
                assert (not probe.refused) == (login(username, password) == "allow"), (username, password)
                probe.close()

        connected = [username for username in users if login(username, registry[username]) == "allow"]
        topics = ["devices/sensor-1/telemetry", "devices/sensor-1/status", "devices/sensor-1/commands/result",
                  "devices/sensor-1/commands", "devices/sensor-2/telemetry", "devices/sensor-1/other"]
        markers = [f"devices/{username}/commands" for username in connected]
        writers = {}
        for username in connected:
            probe = Probe(broker, username, registry[username])
            for topic in topics + markers:
                took = probe.published(topic, retain=True)
                assert took == (may(username, "publish", topic) == "allow"), (username, topic)
                if took:
                    writers.setdefault(topic, username)
            probe.close()
        assert set(markers) <= set(writers), "the bridge leaves a retained message on each login's commands"

        for username in connected:
            probe = Probe(broker, username, registry[username])
            delivered = probe.retained([topic for topic in topics if topic in writers], f"devices/{username}/commands")
            expected = {topic for topic in writers if topic in topics and may(username, "subscribe", topic) == "allow"}
            assert delivered == expected, username
            probe.close()
    finally:
        broker.stop()
