"""`manage.py runhub`, the one-command dev mode, used as a newcomer would: start it with no
Redis and no broker, sign in with the login it prints, watch the simulated fleet, command it."""
import os
import re
import signal
import sys

import pytest

from tests.live import HubClient, HubProcess
from tests.servers import free_port, wait_for_port

pytestmark = pytest.mark.live


@pytest.fixture
def runhub(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("HUB_")}
    env.update(HUB_DATA_DIR=str(tmp_path), PYTHONUNBUFFERED="1")
    port, mqtt_port = free_port(), free_port()
    command = [sys.executable, "manage.py", "runhub", "--port", str(port), "--mqtt-port", str(mqtt_port),
               "--devices", "2", "--interval", "0.2"]
    process = HubProcess(
        "runhub",
        # Started with SIGINT ignored, as a script's background job is: Ctrl-C must stop it still.
        ["sh", "-c", 'trap "" INT; exec "$@"', "runhub", *command],
        env,
        tmp_path / "runhub.log",
    )
    process.start()
    process.port = port
    yield process
    process.stop(signal.SIGKILL)


def test_runhub_starts_the_whole_hub_and_prints_how_to_sign_in(runhub):
    banner = runhub.wait_for_log(r"sign in as (\S+) / (\S+)", timeout=30)
    username, password = banner.group(1), banner.group(2)
    runhub.wait_for_log(r"bridge: connected to mqtt://127\.0\.0\.1")
    wait_for_port("127.0.0.1", runhub.port, 10)
    assert re.search(rf"Telehub is starting at http://127\.0\.0\.1:{runhub.port}/", runhub.log())
    assert "debug mode (HUB_DEBUG)" in runhub.log()  # with no HUB_SECRET_KEY: manage.py asks for it

    hub = HubClient(f"http://127.0.0.1:{runhub.port}/")
    fleet = hub.dashboard("ws/fleet/", hub.login(username, password))
    fleet.send(action="subscribe", devices="*")
    assert {fleet.frame(type="snapshot")["device"] for _ in range(2)} == {"demo-001", "demo-002"}
    assert fleet.frame(type="readings", device="demo-001")["items"][0]["values"].keys() >= {"temp", "humidity"}

    fleet.send(action="command", device="demo-002", name="ping")
    pending = fleet.frame(type="command", status="pending")
    assert "pong" in fleet.frame(type="command", id=pending["id"], status="succeeded")["result"]

    runhub.process.send_signal(signal.SIGINT)
    assert runhub.wait_for_exit(timeout=20, after="Ctrl-C") == 0
    assert "bridge stopped" in runhub.log()
