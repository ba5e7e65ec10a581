"""docker-compose.yml, read as a reviewer would: no Docker engine runs here."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from telemetry.frames import MAX_DEVICES_PER_FRAME
from tests.servers import PROXY_CONFIG, find_program

ROOT = Path(__file__).resolve().parent.parent
LONG_RUNNING = ("redis", "mosquitto", "postgres", "web", "bridge", "proxy")
SCALED = ("web", "bridge")


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose):
    return compose["services"]


def broker_lines():
    lines = (ROOT / "mosquitto" / "mosquitto.conf").read_text().splitlines()
    return [tuple(line.split(maxsplit=1)) for line in lines if line.strip() and not line.startswith("#")]


def broker_options():
    """The config's options; for one given several times (listener), the last."""
    return dict(broker_lines())


def listeners():
    """Each listener's port and its own options (those after it, up to the next listener)."""
    found = []
    for option, value in broker_lines():
        if option == "listener":
            found.append((value.split()[0], {}))
        elif found:
            found[-1][1][option] = value
    return found


def listener_ports():
    """The TLS listener's port (the one with a certfile) and the plain one's."""
    return {("tls" if "certfile" in options else "plain"): port for port, options in listeners()}


def interpolated(value, sample="sample"):
    """A value as compose sees it once the variables it names are set (to `sample`)."""
    return re.sub(r"\$\{\w+(:[?-][^}]*)?\}", sample, value)


def test_every_part_of_the_hub_is_a_service(services):
    assert set(services) >= {"redis", "mosquitto", "postgres", "migrate", "web", "bridge", "proxy", "simulator"}
    assert services["web"]["command"][0] == "daphne"
    assert services["web"]["command"][-1] == "hub.asgi:application"
    assert services["bridge"]["command"] == ["python", "manage.py", "runbridge"]
    assert services["migrate"]["command"][:3] == ["python", "manage.py", "migrate"]
    assert services["simulator"]["command"][:3] == ["python", "manage.py", "simulate"]
    assert services["simulator"]["profiles"] == ["demo"]


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_long_running_services_have_health_checks(services, name):
    assert services[name]["healthcheck"]["test"][0] == "CMD"


@pytest.mark.parametrize("name", ("web", "bridge", "simulator"))
def test_hub_processes_wait_for_migrations_and_healthy_servers(services, name):
    depends_on = services[name]["depends_on"]
    assert depends_on["migrate"]["condition"] == "service_completed_successfully"
    assert depends_on["redis"]["condition"] == "service_healthy"
    assert depends_on["mosquitto"]["condition"] == "service_healthy"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_the_broker_runs_the_projects_config_with_persistent_data(services):
    volumes = services["mosquitto"]["volumes"]
    config_mount = next(volume for volume in volumes if volume.startswith("./mosquitto/"))
    source, target, mode = config_mount.split(":")
    assert (ROOT / source).is_file()
    assert target == "/mosquitto/config/mosquitto.conf" and mode == "ro"
    data_targets = [volume.split(":")[1] for volume in volumes if not volume.startswith("./")]
    assert broker_options()["persistence_location"].rstrip("/") in data_targets


def test_hub_processes_reach_the_servers_by_service_name(services):
    environment = services["bridge"]["environment"]
    mqtt = urlsplit(interpolated(environment["HUB_MQTT_URL"]))
    assert mqtt.hostname == "mosquitto"
    assert str(mqtt.port) == listener_ports()["plain"]
    assert urlsplit(environment["HUB_REDIS_URL"]).hostname == "redis"
    database = urlsplit(environment["HUB_DATABASE_URL"])
    assert database.scheme == "postgres" and database.hostname == "postgres"
    assert database.path == "/" + services["postgres"]["environment"]["POSTGRES_DB"]
    assert all(services[name]["environment"] == environment for name in ("web", "migrate", "simulator"))


def test_every_hub_setting_in_compose_is_a_documented_setting(services):
    readme = (ROOT / "README.md").read_text()
    settings_source = (ROOT / "hub" / "settings.py").read_text()
    for name in services["web"]["environment"]:
        assert f"`{name}`" in readme, f"{name} is not in the README's settings table"
        assert f'"{name}"' in settings_source, f"hub/settings.py does not read {name}"


def test_the_secret_key_must_be_given(services):
    assert re.fullmatch(r"\$\{HUB_SECRET_KEY:\?.+\}", services["web"]["environment"]["HUB_SECRET_KEY"])


def test_the_bridge_health_check_reads_the_heartbeat_it_writes(services):
    dockerfile = (ROOT / "Dockerfile").read_text()
    data_dir = re.search(r"HUB_DATA_DIR=(\S+)", dockerfile).group(1)
    heartbeat_file = subprocess.run(
        [sys.executable, "-c", "from django.conf import settings; print(settings.BRIDGE_HEARTBEAT_FILE)"],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "hub.settings", "HUB_DATA_DIR": data_dir, "HUB_SECRET_KEY": "x"},
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert f"'{heartbeat_file}'" in " ".join(services["bridge"]["healthcheck"]["test"])


def test_the_bridge_gets_time_to_flush_on_stop(services):
    assert services["bridge"]["stop_grace_period"] == "30s"


def test_the_broker_refuses_anonymous_clients_and_reloads_the_logins_the_bridge_writes(services):
    options = broker_options()
    assert options["allow_anonymous"] == "false"
    assert all(own.get("use_username_as_clientid") == "true" for _, own in listeners())
    mosquitto, bridge = services["mosquitto"], services["bridge"]
    assert mosquitto["command"] == ["sh", "/mosquitto/config/run-broker.sh", "/mosquitto/config/mosquitto.conf"]
    assert "./mosquitto/run-broker.sh:/mosquitto/config/run-broker.sh:ro" in mosquitto["volumes"]
    auth_dir = str(Path(options["password_file"]).parent)
    assert Path(options["acl_file"]).parent == Path(auth_dir)
    shared = {volume.split(":")[0] for volume in mosquitto["volumes"] if volume.split(":")[1] == auth_dir}
    bridge_dir = bridge["environment"]["HUB_BROKER_AUTH_DIR"]
    assert shared & {volume.split(":")[0] for volume in bridge["volumes"] if volume.split(":")[1] == bridge_dir}
    # The volume is made by migrate (the hub's image, the hub's user) before the broker starts.
    assert mosquitto["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert any(volume.split(":")[0] in shared for volume in services["migrate"]["volumes"])


def test_the_bridge_logs_in_with_an_account_name_and_a_required_password(services):
    from devices.models import BrokerAccount

    url = services["bridge"]["environment"]["HUB_MQTT_URL"]
    mqtt = urlsplit(interpolated(url))
    BrokerAccount._meta.get_field("username").run_validators(mqtt.username)
    assert mqtt.password == "sample"
    assert re.search(r":\$\{MQTT_BRIDGE_PASSWORD:\?[^}]+\}@", url)


def test_devices_reach_only_the_tls_listener_from_outside(services):
    ports = listener_ports()
    published = services["mosquitto"]["ports"]
    assert f"{ports['tls']}:{ports['tls']}" in published
    assert [port for port in published if port.endswith(f":{ports['plain']}")] == [f"127.0.0.1:{ports['plain']}:{ports['plain']}"]
    certs = Path(broker_options()["certfile"]).parent
    assert Path(broker_options()["keyfile"]).parent == certs
    assert f"./mosquitto/certs:{certs}:ro" in services["mosquitto"]["volumes"]


def test_the_broker_health_check_wants_anonymous_clients_refused(services):
    test = services["mosquitto"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "sh", "-c"]
    assert "mosquitto_sub" in test[3] and "-eq 5" in test[3]



def test_the_web_service_sits_behind_a_tls_proxy(services, settings):
    web = services["web"]
    assert "--proxy-headers" in web["command"]
    # Only the compose network, where the proxy is, may reach daphne: it believes the
    # X-Forwarded-* headers.
    assert "ports" not in web
    assert web["environment"]["HUB_HTTPS"] == "${HUB_HTTPS:-true}"
    # The health check asks daphne over plain HTTP, which HTTPS mode must not redirect.
    health_path = re.search(r"http://localhost:8000/(\w+)", " ".join(web["healthcheck"]["test"])).group(1)
    assert any(re.fullmatch(pattern, health_path) for pattern in settings.SECURE_REDIRECT_EXEMPT)


def test_daphne_reads_no_websocket_message_larger_than_the_largest_frame_a_dashboard_sends(services, settings):
    command = services["web"]["command"]
    limit = int(command[command.index("--websocket-max-message-size") + 1])
    largest_command = settings.MAX_PAYLOAD_BYTES + 1000  # params, and the frame's other fields
    largest_subscribe = MAX_DEVICES_PER_FRAME * (64 + 3) + 100  # ids of 64 characters, quoted
    assert max(largest_command, largest_subscribe) < limit < 1 << 20  # daphne's own default


def test_the_web_health_check_asks_for_readiness(services):
    web = services["web"]
    assert "http://localhost:8000/readyz" in " ".join(web["healthcheck"]["test"])
    # The check's own bound (urlopen's timeout) sits inside compose's, and /readyz answers within
    # its 2 s per check, so a down Redis marks the service unhealthy rather than timing out.
    timeout = float(re.search(r"timeout=(\d+)", " ".join(web["healthcheck"]["test"])).group(1))
    assert 2 < timeout < float(web["healthcheck"]["timeout"].rstrip("s"))


def test_the_bridge_serves_its_metrics_on_the_compose_network_only(services):
    environment = services["bridge"]["environment"]
    assert int(environment["HUB_BRIDGE_METRICS_PORT"]) > 0
    assert environment["HUB_BRIDGE_METRICS_ADDRESS"] == "0.0.0.0"
    assert "ports" not in services["bridge"]
    # A Prometheus on the compose network may reach each web process by its service name.
    assert "web" in interpolated(environment["HUB_ALLOWED_HOSTS"]).split(",")


def test_devices_are_told_the_public_broker_address(services):
    url = services["web"]["environment"]["HUB_MQTT_PUBLIC_URL"]
    assert re.fullmatch(r"\$\{HUB_MQTT_PUBLIC_URL:\?.+mqtts://.+\}", url)


def test_the_readme_gives_the_broker_key_to_the_brokers_user_in_the_image(services):
    # eclipse-mosquitto runs the broker as uid 1883, after reading its config as root; the key
    # make-certs.sh writes is readable by its owner only.
    assert services["mosquitto"]["image"].startswith("eclipse-mosquitto:")
    readme = (ROOT / "README.md").read_text()
    assert "sudo BROKER_USER=1883 mosquitto/make-certs.sh mosquitto/certs" in readme


def web_port(services):
    command = services["web"]["command"]
    return int(command[command.index("-p") + 1])


@pytest.fixture(scope="module")
def proxy_config():
    """proxy/Caddyfile as Caddy itself reads it (`caddy adapt`), for a sample WEB_DOMAIN: its
    one site's address and the handlers of its routes, in order."""
    adapted = subprocess.run(
        [find_program("caddy"), "adapt", "--adapter", "caddyfile", "--config", str(PROXY_CONFIG)],
        env={**os.environ, "WEB_DOMAIN": "hub.example.com"}, capture_output=True, text=True, check=True,
    ).stdout
    (server,) = json.loads(adapted)["apps"]["http"]["servers"].values()
    (site,) = server["routes"]
    return {"hosts": site["match"][0]["host"], "routes": site["handle"][0]["routes"]}


@pytest.mark.parametrize("name", SCALED)
def test_scaled_services_have_no_fixed_host_port_name_or_client_id(services, name):
    """`docker compose up --scale web=N --scale bridge=M`: each replica a container of its own."""
    service = services[name]
    assert not {"ports", "container_name", "hostname"} & set(service)
    assert not {"HUB_MQTT_CLIENT_ID", "HUB_BRIDGE_ID"} & set(service["environment"])
    assert "HUB_BRIDGE_HEARTBEAT_FILE" not in service["environment"]  # each replica its own /data
    assert not any(volume.split(":")[1].startswith("/data") for volume in service.get("volumes", []))


def test_no_service_has_a_fixed_container_name(services):
    assert not [name for name, service in services.items() if "container_name" in service]


def test_the_bridges_share_the_devices_messages(services):
    group = services["bridge"]["environment"]["HUB_MQTT_SHARED_GROUP"]
    assert re.fullmatch(r"[\w.-]+", group)  # a topic level of its own: no wildcards, no slash


def test_the_proxy_runs_the_projects_caddyfile_and_keeps_its_certificates(services):
    proxy = services["proxy"]
    assert proxy["image"].startswith("caddy:2")
    assert "./proxy/Caddyfile:/etc/caddy/Caddyfile:ro" in proxy["volumes"]
    assert any(volume.split(":")[1] == "/data" and not volume.startswith(".") for volume in proxy["volumes"])
    # HTTPS, and HTTP for ACME's challenge and the redirect to HTTPS.
    assert {"80:80", "443:443"} <= set(proxy["ports"])
    assert proxy["depends_on"]["web"]["condition"] == "service_started"


def test_the_proxy_serves_the_domain_the_web_replicas_allow(services, proxy_config):
    domain = services["proxy"]["environment"]["WEB_DOMAIN"]
    assert re.fullmatch(r"\$\{WEB_DOMAIN:\?.+\}", domain)
    assert interpolated(domain) in interpolated(services["web"]["environment"]["HUB_ALLOWED_HOSTS"]).split(",")
    # No scheme or port in the address: Caddy serves HTTPS on 443 and gets the certificate itself.
    assert proxy_config["hosts"] == ["hub.example.com"]


def test_the_proxy_balances_over_every_web_replica_found_again_and_again(services, proxy_config):
    (proxy,) = [route["handle"][0] for route in proxy_config["routes"] if route["handle"][0]["handler"] == "reverse_proxy"]
    # All of web's addresses, from compose's DNS, asked again within seconds: a replica added by
    # --scale gets requests without a restart of the proxy (resolved once at start, it never would).
    upstreams = proxy["dynamic_upstreams"]
    assert (upstreams["source"], upstreams["name"], int(upstreams["port"])) == ("a", "web", web_port(services))
    assert upstreams["refresh"] <= 10e9
    assert "upstreams" not in proxy  # no fixed address besides
    # Long-lived sockets are balanced by count; a refusing replica is skipped.
    assert proxy["load_balancing"]["selection_policy"]["policy"] == "least_conn"
    assert proxy["load_balancing"]["try_duration"] > 0
    assert proxy["health_checks"]["passive"]["fail_duration"] > 0
    # No header the client sent survives as X-Forwarded-*: Caddy sets them itself unless told
    # to trust a proxy in front of it (tests/test_scale_out.py sees what daphne receives).
    assert "trusted_proxies" not in proxy and "headers" not in proxy
    # Nothing bounds how long a dashboard's socket may stay open.
    assert "stream_timeout" not in proxy


def test_the_proxy_keeps_metrics_off_the_internet(proxy_config):
    first = proxy_config["routes"][0]
    assert first["match"] == [{"path": ["/metrics"]}]
    assert first["handle"] == [{"handler": "static_response", "status_code": 403}]


def test_every_replica_has_its_own_health_check_and_the_proxy_its_own(services):
    assert "http://localhost:8000/readyz" in " ".join(services["web"]["healthcheck"]["test"])
    assert "os.path.getmtime('/data/" in " ".join(services["bridge"]["healthcheck"]["test"])
    assert "http://127.0.0.1:2019/" in " ".join(services["proxy"]["healthcheck"]["test"])
