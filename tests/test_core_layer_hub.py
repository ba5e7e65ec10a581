"""The hub on channels-redis's core layer (HUB_CHANNEL_LAYER=core), over real sockets."""
import time

import pytest

from tests.conftest import PASSWORD, running_hub
from tests.live import Device, unique_id

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

# channels-redis's core layer receives with blocking pops of up to 5 s.
BLOCKING_POP_SECONDS = 5


@pytest.fixture(scope="module")
def core_hub(django_db_setup, redis_server, mosquitto_server, tmp_path_factory):
    yield from running_hub(redis_server, mosquitto_server, tmp_path_factory.mktemp("core-hub"), channel_layer="core")


def test_after_the_layer_idled_a_reading_still_reaches_the_dashboard(core_hub, make_user, make_device):
    owner = make_user(unique_id("owner"))
    device = make_device(unique_id("sensor"), owner)
    dashboard = core_hub.dashboard(f"ws/devices/{device.id}/", core_hub.login(owner.username, PASSWORD))
    snapshot = dashboard.frame(type="snapshot")
    time.sleep(BLOCKING_POP_SECONDS + 1)  # every receive of the bridge and of daphne idles through a whole pop
    assert core_hub.bridge.process.poll() is None, core_hub.bridge.log()[-2000:]
    sensor = Device(core_hub.mqtt_url, device.id, device.mqtt_password).connect()
    sensor.send_reading({"temp": 20.5}, ts=int(time.time() * 1000))
    frame = dashboard.frame(type="readings", device=device.id)
    assert frame["seq"] == snapshot["seq"] + 1 and frame["items"][0]["values"] == {"temp": 20.5}
    sensor.go_offline()
