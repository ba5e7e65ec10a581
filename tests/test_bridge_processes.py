"""`runbridge --processes N` (bridge.processes): N bridges from one command, each its own bridge
in the shared group, started again when one exits, stopped together."""
import re
import signal
import time
import urllib.request

import psutil
import pytest
from django.conf import settings

from telemetry.models import Reading
from tests.live import STARTUP_TIMEOUT, Device, LiveHub, wait_until
from tests.servers import free_ports_in_a_row

pytestmark = [pytest.mark.live, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

READINGS = 300


@pytest.fixture
def hub(django_db_setup, redis_server, mosquitto_server, tmp_path):
    """A hub whose bridge is `runbridge --processes 2`, each child serving its metrics."""
    metrics_port = free_ports_in_a_row(3)  # the parent's, and its two children's above it
    hub = LiveHub(settings.DATABASES["default"], redis_server.url, mosquitto_server, tmp_path,
                  bridge_metrics_port=metrics_port)
    hub.bridge.args = [*hub.bridge.args, "--processes", "2"]
    hub.metrics_ports = [metrics_port + 1, metrics_port + 2]
    try:
        hub.bridge.start()
        wait_until(lambda: len(connected(hub)) >= 2, timeout=STARTUP_TIMEOUT, message="both bridge processes connected")
        yield hub
    finally:
        hub.stop()


def connected(hub):
    return re.findall(r"connected to mqtt://", hub.bridge.log())


def children(hub):
    """{bridge id: pid} of the children started so far, the latest pid of each."""
    return dict(re.findall(r"bridge process (\S+) started \(pid (\d+)\)", hub.bridge.log()))


def stored_by(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return float(re.search(r"^telehub_bridge_readings_stored_total (\S+)$", response.read().decode(), re.M).group(1))


def test_two_processes_share_the_readings_and_one_that_dies_is_started_again(hub, device):
    started = children(hub)
    assert sorted(started) == [f"{hub.bridge_id}-1", f"{hub.bridge_id}-2"]
    heartbeat = hub.workdir / "bridge.heartbeat"
    wait_until(heartbeat.exists, message="the parent's heartbeat, once both children beat")

    sensor = Device(hub.mqtt_url, device.id, device.mqtt_password)
    sensor.connect()
    first_ts = int(time.time() * 1000) - 60_000
    for n in range(READINGS):
        sensor.send_reading({"n": n}, ts=first_ts + n)
    wait_until(lambda: Reading.objects.filter(device=device).count() >= READINGS, message="every reading stored")
    assert sorted(Reading.objects.filter(device=device).values_list("ts", flat=True)) == [first_ts + n for n in range(READINGS)]
    shares = [stored_by(port) for port in hub.metrics_ports]
    assert sum(shares) == READINGS and all(shares), f"each process stores its share: {shares}"

    victim = f"{hub.bridge_id}-2"
    psutil.Process(int(started[victim])).send_signal(signal.SIGKILL)
    hub.bridge.wait_for_log(rf"bridge process {re.escape(victim)} exited with -9 .* starting it again")
    wait_until(lambda: children(hub)[victim] != started[victim], message="the killed process started again")
    wait_until(lambda: len(connected(hub)) >= 3, timeout=STARTUP_TIMEOUT, message="the new process connected")

    pids = [int(pid) for pid in children(hub).values()]
    hub.bridge.stop(signal.SIGTERM)
    assert hub.bridge.process.returncode == 0
    assert not [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    sensor.client.disconnect()
