"""Prometheus metrics from every process, scraped over real sockets from a real bridge and a
real daphne while a device publishes, a dashboard watches and a command goes round; who may
scrape a web process; and the bridge's log as JSON lines."""
import time
import urllib.error
import urllib.request

import orjson
import pytest
from django.db import connection
from django.test import Client
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from hub import tasks
from telemetry.models import HourRollup, MinuteRollup
from telemetry.outbox import Outbox
from tests.conftest import PASSWORD, running_hub
from tests.live import TIMEOUT, Device, wait_until
from tests.servers import free_port
from tests.test_faults import database_locked

pytestmark = [pytest.mark.live, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

OUTSIDER = "203.0.113.9"  # TEST-NET-3: never this machine


@pytest.fixture(scope="module")
def hub(django_db_setup, redis_server, mosquitto_server, tmp_path_factory):
    hub = running_hub(
        redis_server, mosquitto_server, tmp_path_factory.mktemp("metrics-hub"),
        bridge_metrics_port=free_port(), log_format="json", db_lock_timeout=1,
    )
    yield from hub


def bridge_metrics_url(hub):
    return f"http://127.0.0.1:{hub.bridge.env['HUB_BRIDGE_METRICS_PORT']}/metrics"


def get(url, headers=None):
    """(status, body) of a GET."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def scrape(url, headers=None):
    status, text = get(url, headers)
    assert status == 200, text
    return samples_of(text)


def samples_of(text):
    """{(sample name, labels as sorted tuples): value} of a metrics page."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text) for sample in family.samples
    }


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0)


def grows(url, name, before, **labels):
    """Waits until the metric is above `before` in a scrape of `url`; returns that scrape."""
    return wait_until(lambda: (lambda s: s if value(s, name, **labels) > before else None)(scrape(url)),
                      message=f"{name}{labels} above {before} at {url}")


def test_the_bridge_counts_what_it_receives_stores_and_rejects(hub, device):
    url = bridge_metrics_url(hub)
    before = scrape(url)
    sensor = Device(hub.mqtt_url, device.id, device.mqtt_password).connect()
    sensor.send_reading({"temp": 21.5, "hum": 40})
    sensor.publish(sensor.topic("telemetry"), b"temp=21")

    after = grows(url, "telehub_bridge_messages_rejected_total", value(before, "telehub_bridge_messages_rejected_total",
                                                                         reason="not_json"), reason="not_json")
    after = grows(url, "telehub_bridge_readings_stored_total", value(before, "telehub_bridge_readings_stored_total") + 1)
    assert value(after, "telehub_bridge_messages_received_total") >= value(before, "telehub_bridge_messages_received_total") + 2
    assert value(after, "telehub_bridge_broker_connected") == 1
    assert value(after, "telehub_bridge_readings_held_limit") == 100000  # HUB_BRIDGE_MAX_HELD_READINGS's default
    assert value(after, "telehub_bridge_reading_paused") == 0
    assert ("telehub_bridge_reading_pauses_total", ()) in after
    assert value(after, "telehub_bridge_flush_seconds_count") > value(before, "telehub_bridge_flush_seconds_count")
    assert ("telehub_bridge_readings_held", ()) in after and ("telehub_bridge_oldest_held_seconds", ()) in after
    assert ("telehub_bridge_store_failures_total", (("kind", "transient"),)) in after
    assert ("process_resident_memory_bytes", ()) in after
    # The bridge's registry is its own: no web process's metrics in it.
    assert not any(name.startswith("telehub_ws_") for name, _ in after)
    sensor.go_offline()


def test_the_bridge_rolls_up_readings_as_they_arrive_twice_or_late_and_counts_its_passes(hub, device):
    url = bridge_metrics_url(hub)
    before = value(scrape(url), "telehub_rollup_minutes_total")
    sensor = Device(hub.mqtt_url, device.id, device.mqtt_password).connect()
    minute = (int(time.time() * 1000) - 120_000) // 60_000 * 60_000  # ended: rolled up at once
    for ts, temp in ((minute + 1000, 2.0), (minute + 1000, 2.0), (minute + 2000, 6.0)):  # one sent twice
        sensor.send_reading({"temp": temp}, ts=ts)
    rolled = wait_until(lambda: MinuteRollup.objects.filter(device_id=device.id, key="temp", count=2).first(),
                        message="the minute rolled up")
    assert (rolled.min, rolled.max, rolled.sum, rolled.first, rolled.last) == (2.0, 6.0, 8.0, 2.0, 6.0)
    sensor.send_reading({"temp": 1.0}, ts=minute + 500)  # late
    wait_until(lambda: HourRollup.objects.filter(device_id=device.id, key="temp", count=3, first=1.0).exists(),
               message="the late reading rolled up")
    after = grows(url, "telehub_rollup_minutes_total", before + 1)
    assert value(after, "telehub_rollup_last_pass_age_seconds") >= 0
    assert ("telehub_retention_deleted_total", (("resolution", "raw"),)) in after
    sensor.go_offline()


def test_while_the_database_refuses_writes_the_bridge_shows_what_it_holds_and_since_when(hub, device):
    if connection.vendor != "sqlite":
        pytest.skip("holds SQLite's write lock")
    url = bridge_metrics_url(hub)
    failures = value(scrape(url), "telehub_bridge_store_failures_total", kind="transient")
    sensor = Device(hub.mqtt_url, device.id, device.mqtt_password).connect()
    log = len(hub.bridge.log())
    with database_locked():
        sensor.send_reading({"temp": 1})
        sensor.send_reading({"temp": 2})

        def holding():
            samples = scrape(url)
            return (value(samples, "telehub_bridge_store_failures_total", kind="transient") > failures
                    and value(samples, "telehub_bridge_oldest_held_seconds") > 1 and samples)

        held = wait_until(holding, message="a failed store, and the readings held for over a second")
        assert value(held, "telehub_bridge_readings_held") == 2
        hub.bridge.wait_for_log(r'"message":"could not store', start=log)
    wait_until(lambda: value(scrape(url), "telehub_bridge_readings_held") == 0, message="the held readings stored")
    failed = [line for line in json_lines(hub.bridge) if line["message"].startswith("could not store")]
    assert failed and all(line["kind"] == "transient" and line["count"] >= 1 for line in failed)
    assert value(scrape(url), "telehub_bridge_oldest_held_seconds") == 0
    sensor.go_offline()


def test_web_and_bridge_count_sockets_frames_relay_messages_and_commands(hub, device, owner):
    web, bridge = hub.url + "metrics", bridge_metrics_url(hub)
    before_web, before_bridge = scrape(web), scrape(bridge)
    cookie = hub.login(owner.username, PASSWORD)
    dashboard = hub.dashboard(f"ws/devices/{device.id}/", cookie)
    dashboard.frame(type="snapshot")
    assert value(scrape(web), "telehub_ws_sockets_open") >= 1

    sensor = Device(hub.mqtt_url, device.id, device.mqtt_password).connect()
    sensor.send_reading({"temp": 22})
    dashboard.frame(type="readings")
    after = scrape(web)
    assert value(after, "telehub_ws_frames_sent_total") > value(before_web, "telehub_ws_frames_sent_total")
    assert value(after, "telehub_relay_messages_total", type="live.readings") > value(
        before_web, "telehub_relay_messages_total", type="live.readings")

    response = hub.api("POST", f"api/devices/{device.id}/commands/", cookie, {"name": "ping", "params": {}})
    assert response.status == 201, response.body
    sensor.answer(sensor.next_command()["id"], result={"pong": True})
    dashboard.frame(type="command", status="succeeded")
    assert value(scrape(web), "telehub_commands_total", status="pending") == value(
        before_web, "telehub_commands_total", status="pending") + 1
    counted = scrape(bridge)
    for status in ("sent", "succeeded"):
        assert value(counted, "telehub_commands_total", status=status) == value(
            before_bridge, "telehub_commands_total", status=status) + 1
    sensor.go_offline()

    dashboard.close()
    wait_until(lambda: value(scrape(web), "telehub_ws_sockets_open") == value(before_web, "telehub_ws_sockets_open"),
               message="the closed socket no longer counted")


def test_sockets_the_server_ends_are_counted_by_close_code(hub, device, owner):
    web = hub.url + "metrics"
    before = value(scrape(web), "telehub_ws_sockets_ended_total", code="4401")
    dashboard = hub.dashboard(f"ws/devices/{device.id}/", hub.login(owner.username, PASSWORD))
    dashboard.frame(type="snapshot")
    owner.is_active = False
    owner.save()
    wait_until(lambda: value(scrape(web), "telehub_ws_sockets_ended_total", code="4401") == before + 1,
               message="the deactivated user's socket ended and counted")
    dashboard.close()


def test_sign_ins_refused_for_too_many_failures_are_counted(hub, owner):
    before = value(scrape(hub.url + "metrics"), "telehub_signins_throttled_total")
    answers = [hub.sign_in(owner.username, "not the password")[0].status for _ in range(6)]
    assert 429 in answers  # at the latest after HUB_SIGNIN_LIMIT_PER_USERNAME_AND_ADDRESS (5) failures
    assert value(scrape(hub.url + "metrics"), "telehub_signins_throttled_total") == before + answers.count(429)


def test_a_web_process_shows_its_metrics_to_loopback_but_not_to_a_request_forwarded_from_elsewhere(hub):
    assert get(hub.url + "metrics")[0] == 200
    # The client is this machine, but the request says it was forwarded for another.
    assert get(hub.url + "metrics", {"X-Forwarded-For": OUTSIDER})[0] == 403
    assert get(hub.url + "metrics", {"X-Forwarded-For": "127.0.0.1, " + OUTSIDER})[0] == 403


@pytest.fixture(scope="module")
def proxied_web(hub):
    """A second daphne of the hub as docker-compose runs it, behind a proxy (--proxy-headers:
    the client is the first X-Forwarded-For address), allowing one network to scrape it."""
    web, url = hub.another_web("daphne-proxied", "--proxy-headers", HUB_METRICS_ALLOWED_IPS="198.51.100.0/24")
    yield url
    web.stop()


@pytest.mark.parametrize("forwarded_for, status", [
    ("198.51.100.7", 200),                 # an allowed scraper, through the proxy
    (OUTSIDER, 403),                       # anyone else, through the proxy
    ("198.51.100.7, " + OUTSIDER, 403),    # a forged allowed address, which the proxy appended to
    ("127.0.0.1, " + OUTSIDER, 403),       # a forged loopback address, likewise
    ("not-an-address", 403),
])
def test_behind_the_proxy_only_allowed_addresses_may_scrape(proxied_web, forwarded_for, status):
    assert get(proxied_web + "metrics", {"X-Forwarded-For": forwarded_for})[0] == status
    assert get(proxied_web + "healthz", {"X-Forwarded-For": forwarded_for})[0] == 200


def test_task_crashes_are_exported_by_task(settings):
    settings.METRICS_ALLOWED_IPS = []
    tasks.crashes["test-task"] += 1
    try:
        response = Client(REMOTE_ADDR="127.0.0.1").get("/metrics")
        assert response.status_code == 200
        samples = samples_of(response.content.decode())
        assert value(samples, "telehub_task_crashes_total", task="test-task") >= 1
        assert Client(REMOTE_ADDR=OUTSIDER).get("/metrics").status_code == 403
        assert Client(REMOTE_ADDR="::ffff:127.0.0.1").get("/metrics").status_code == 200
    finally:
        del tasks.crashes["test-task"]


def test_with_json_logs_every_bridge_line_is_json_and_a_rejection_names_device_and_reason(hub, device):
    sensor = Device(hub.mqtt_url, device.id, device.mqtt_password).connect()
    sensor.publish(sensor.topic("telemetry"), b'{"temp": [1, 2]}')

    def rejection():
        lines = json_lines(hub.bridge)
        return next((line for line in lines if line.get("device") == device.id and line.get("reason") == "bad_value"), None)

    line = wait_until(rejection, message="the rejection's JSON line")
    assert line["level"] == "WARNING" and line["logger"] == "bridge.rejects" and line["count"] == 1
    assert device.id in line["message"] and line["time"].endswith("+00:00")
    sensor.go_offline()


def json_lines(process):
    """Every line a process logged, each parsed as JSON (one that is not fails the test)."""
    return [orjson.loads(line) for line in process.log().splitlines() if line.strip()]


def test_an_outbox_counts_the_frames_it_hands_out_and_those_it_drops():
    def counted(name):
        return REGISTRY.get_sample_value(name) or 0

    sent, dropped = counted("telehub_ws_frames_sent_total"), counted("telehub_ws_frames_dropped_total")
    outbox = Outbox(limit=2, max_frame_chars=10)
    outbox.extend([("a", n, f'{{"n":{n}}}') for n in range(4)] + [("a", 4, "x" * 11)])
    texts, lost = outbox.take()
    assert len(texts) == 1 and lost == {"a": 4}  # three pushed out, one too large
    assert counted("telehub_ws_frames_sent_total") == sent + 1
    assert counted("telehub_ws_frames_dropped_total") == dropped + 4
