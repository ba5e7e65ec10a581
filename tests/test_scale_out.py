"""The hub scaled out as docker-compose.yml runs it (`docker compose up --scale web=2 --scale
bridge=3`), as plain processes: two daphne processes behind Caddy running the project's
proxy/Caddyfile over HTTPS, which finds them as compose's DNS gives them (one name, an address
per replica), and three bridges on one shared subscription, all given compose's one login: each
derives its own broker account, client id and lease from its HUB_BRIDGE_ID, as a replica does
from its container's hostname."""
import re
import sys
import uuid

import pytest

from devices.models import Command
from telemetry.models import Reading
from tests.conftest import PASSWORD, running
from tests.live import (
    Device, HubClient, HubProcess, daphne_command, forget_bridge_logins, hub_environment, unique_id, wait_until,
)
from tests.servers import NameServer, ProxyServer, free_port, wait_for_port

# On SQLite only: what this proves is the topology (proxy, replicas, shared group); that each
# reading and command is handled once under PostgreSQL's concurrency, tests/test_bridges.py shows.
pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

# Each web replica at an address of its own, on one port, as compose's replicas are.
WEB_ADDRESSES = ("127.0.0.1", "127.0.0.2")
BRIDGES = 3
# Five of the hub's processes start at once on a machine that may be busy.
START_TIMEOUT = 60


class ScaledHub(HubClient):
    """The web replicas, the bridges and the proxy; a HubClient of the proxy's address."""

    def __init__(self, database, redis_url, broker, workdir):
        self.database = database
        self.broker_url = broker.url
        self.web_port = free_port()
        # Started as one replica: the test scales to two.
        self.name_server = NameServer(WEB_ADDRESSES[:1])
        self.proxy = ProxyServer(workdir, self.name_server, self.web_port)
        super().__init__(self.proxy.url)
        env = hub_environment(database, redis_url, broker, workdir, https="true")
        self.webs = [
            HubProcess(f"web-{n}", daphne_command(self.web_port, "--proxy-headers", host=address),
                       env, workdir / f"web-{n}.log")
            for n, address in enumerate(WEB_ADDRESSES, 1)
        ]
        # Compose's one bridge login; a group of this hub's own, since the broker keeps other
        # tests' stopped hubs' sessions (compose's is `telehub`).
        self.bridge_login = unique_id("bridge.test")
        shared = {"HUB_MQTT_URL": broker.login_url(self.bridge_login, uuid.uuid4().hex),
                  "HUB_MQTT_SHARED_GROUP": unique_id("scaled")}
        self.bridges = []
        for n in range(1, BRIDGES + 1):
            data_dir = workdir / f"bridge-{n}"
            data_dir.mkdir()
            self.bridges.append(HubProcess(f"bridge-{n}", [sys.executable, "manage.py", "runbridge"], {
                **env, **shared, "HUB_BRIDGE_ID": unique_id(f"replica-{n}"), "HUB_DATA_DIR": str(data_dir),
            }, workdir / f"bridge-{n}.log"))

    def start(self):
        self.name_server.start()
        try:
            for process in self.webs + self.bridges:
                process.start()
            for address in WEB_ADDRESSES:
                wait_for_port(address, self.web_port, START_TIMEOUT)
            for bridge in self.bridges:
                bridge.wait_for_log(r"connected to mqtt://", timeout=START_TIMEOUT)
            self.proxy.start()
        except BaseException:  # no process of a hub that never started outlives the test
            self.stop()
            raise

    def stop(self):
        self.proxy.stop()
        for process in self.bridges + self.webs:
            process.stop()
        self.name_server.stop()
        forget_bridge_logins(self.database, [self.bridge_login])


@pytest.fixture(scope="module")
def scaled_hub(django_db_setup, redis_server, mosquitto_server, tmp_path_factory):
    from django.conf import settings

    hub = ScaledHub(settings.DATABASES["default"], redis_server.url, mosquitto_server, tmp_path_factory.mktemp("scaled"))
    with pytest.MonkeyPatch.context() as patch:
        # Clients here (urllib, websockets) trust the proxy's local CA, as browsers trust a real one.
        patch.setenv("SSL_CERT_FILE", str(hub.proxy.ca_file))
        yield from running(hub)


def sockets_opened(web):
    return web.log().count('"WSCONNECT /ws/')


def replica_serving(hub, open_socket):
    """Opens a socket through the proxy; returns it and the web replica that accepted it."""
    before = [sockets_opened(web) for web in hub.webs]
    dashboard = open_socket()
    grown = wait_until(
        lambda: [web for web, count in zip(hub.webs, before) if sockets_opened(web) > count],
        message="a web replica to log the socket",
    )
    return dashboard, grown[0]


def stored_by(bridge):
    counts = re.findall(r"stats: received=\d+ stored_readings=(\d+)", bridge.log())
    return int(counts[-1]) if counts else 0


def test_two_web_replicas_behind_the_proxy_and_three_bridges_act_as_one_hub(scaled_hub, make_device, owner):
    first, second = scaled_hub.webs
    devices = [make_device(unique_id("sensor"), owner) for _ in range(BRIDGES)]
    # Signed in over HTTPS through the proxy: the session cookie is Secure, and Django, behind
    # the proxy's X-Forwarded-Proto, sees HTTPS (or it would redirect the sign-in for ever).
    cookie = scaled_hub.login(owner.username, PASSWORD)
    assert scaled_hub.api("GET", "metrics", None).status == 403  # answered by the proxy itself
    # X-Forwarded-For comes from the proxy, never from the client.
    assert scaled_hub.api("GET", "healthz", None, headers={"X-Forwarded-For": "203.0.113.9"}).status == 200
    wait_until(lambda: any('"GET /healthz' in web.log() for web in scaled_hub.webs), message="the request in a log")
    assert not any("203.0.113.9" in web.log() for web in scaled_hub.webs)

    def fleet():
        dashboard = scaled_hub.dashboard("ws/fleet/", cookie)
        dashboard.send(action="subscribe", devices=[device.id for device in devices])
        waiting = {device.id for device in devices}
        while waiting:
            waiting.discard(dashboard.frame(type="snapshot")["device"])
        return dashboard

    # One replica in DNS: the proxy sends every socket there.
    on_first, replica = replica_serving(scaled_hub, fleet)
    assert replica is first
    # Scaled to two: the proxy finds the new replica again in DNS, and the next socket goes to the
    # replica with fewer (least_conn), so within seconds one opens there.
    scaled_hub.name_server.addresses = list(WEB_ADDRESSES)
    opened = []

    def a_socket_on_the_second_replica():
        dashboard, replica = replica_serving(scaled_hub, fleet)
        opened.append(dashboard)
        return dashboard if replica is second else None

    on_second = wait_until(a_socket_on_the_second_replica, timeout=30, interval=0.5, message="a socket on the new replica")
    for dashboard in opened:
        if dashboard is not on_second:
            dashboard.close()
    dashboards = (on_first, on_second)

    # Readings from three devices, spread by the broker over the three bridges: every dashboard,
    # on either replica, gets every reading once.
    sensors = [Device(scaled_hub.broker_url, device.id, device.mqtt_password).connect() for device in devices]
    per_device, start = 20, 1_700_000_000_000
    for n in range(per_device):
        for sensor in sensors:
            sensor.send_reading({"n": n}, ts=start + n)
    expected = sorted((device.id, start + n) for device in devices for n in range(per_device))
    for dashboard in dashboards:
        seen = []
        while len(seen) < len(expected):
            frame = dashboard.frame(type="readings")
            seen += [(frame["device"], item["ts"]) for item in frame["items"]]
        assert sorted(seen) == expected
        dashboard.no_frame(within=1, type="readings")
    assert Reading.objects.filter(device__in=devices).count() == len(expected)
    wait_until(lambda: all(stored_by(bridge) > 0 for bridge in scaled_hub.bridges), message="every bridge to store some")

    # A command through the proxy reaches its device once, and its answer every dashboard.
    device, sensor = devices[0], sensors[0]
    response = scaled_hub.api("POST", f"api/devices/{device.id}/commands/", cookie, {"name": "reboot", "params": {"n": 1}})
    assert response.status == 201, response.body
    command = response.json()
    assert sensor.next_command() == {"id": command["id"], "name": "reboot", "params": {"n": 1}}
    sensor.no_command(within=3)
    sensor.answer(command["id"], ok=True, result={"rebooted": True})
    for dashboard in dashboards:
        done = dashboard.frame(type="command", id=command["id"], status="succeeded")
        assert done["result"] == {"rebooted": True}
    assert Command.objects.get(pk=command["id"]).status == "succeeded"
    for sensor in sensors:
        sensor.go_offline()
    for dashboard in dashboards:
        dashboard.close()
