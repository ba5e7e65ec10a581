"""What one dashboard socket may send (telemetry.inbound): its budget on a clock the test turns,
and a flood over real daphne, which warns, then closes the flooding socket with 1008 while
another socket on the same daphne goes on."""
import orjson
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as websocket_connect

from telemetry.inbound import ALLOWED, DROPPED, EXCEEDED, REFUSED, InboundBudget, utf8_size
from tests.conftest import PASSWORD
from tests.live import Dashboard, Device, unique_id
from tests.manual_clock import Clock


def test_a_socket_may_burst_then_gets_its_rate():
    clock = Clock()
    budget = InboundBudget(frames_per_second=2, bytes_per_second=1000, burst_seconds=5, clock=clock)
    assert [budget.spend(10) for _ in range(10)] == [ALLOWED] * 10
    assert budget.spend(10) == REFUSED
    clock.now += 0.5
    assert budget.spend(10) == ALLOWED


def test_bytes_count_before_frames_run_out():
    clock = Clock()
    budget = InboundBudget(frames_per_second=100, bytes_per_second=1000, burst_seconds=2, clock=clock)
    assert budget.spend(2000) == ALLOWED
    assert budget.spend(1) == REFUSED
    clock.now += 1
    assert budget.spend(1000) == ALLOWED


def test_past_the_budget_the_client_is_told_once_then_closed_after_a_seconds_worth_more():
    budget = InboundBudget(frames_per_second=3, bytes_per_second=1000, burst_seconds=1, clock=Clock())
    verdicts = [budget.spend(1) for _ in range(8)]
    assert verdicts == [ALLOWED] * 3 + [REFUSED, DROPPED, DROPPED, EXCEEDED, EXCEEDED]


def test_a_frame_within_budget_again_starts_the_count_afresh():
    clock = Clock()
    budget = InboundBudget(frames_per_second=1, bytes_per_second=1000, burst_seconds=1, clock=clock)
    assert [budget.spend(1) for _ in range(2)] == [ALLOWED, REFUSED]
    clock.now += 1
    assert [budget.spend(1) for _ in range(3)] == [ALLOWED, REFUSED, EXCEEDED]


def test_the_size_is_the_utf8_size():
    assert utf8_size('{"a": "x"}') == 10
    assert utf8_size('"é€"') == 2 + 2 + 3


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("devices", [1000, 2], ids=["large-subscribes", "small-subscribes"])
def test_a_flooding_socket_gets_rate_limited_then_1008_and_another_socket_goes_on(live_hub, device, owner, make_user, devices):
    quiet = live_hub.dashboard("ws/fleet/", live_hub.login(owner.username, PASSWORD))
    quiet.send(action="subscribe", devices=[device.id])
    quiet.frame(type="snapshot", device=device.id)
    flooder = make_user(unique_id("flooder"))
    # A client that reads all it is sent meanwhile (websockets' own stops reading at 16 messages).
    flood = Dashboard(websocket_connect(
        live_hub.ws_url("ws/fleet/"), additional_headers={"Cookie": live_hub.login(flooder.username, PASSWORD)},
        origin=live_hub.url.rstrip("/"), max_queue=None,
    ))
    frame = orjson.dumps({"action": "subscribe", "devices": [unique_id("x") for _ in range(devices)]}).decode()
    try:
        for _ in range(100_000):  # as fast as it can, until daphne closes it
            flood.socket.send(frame)
    except ConnectionClosed:
        pass
    with pytest.raises(ConnectionClosed) as closed:
        flood.frame(type="never")
    assert closed.value.rcvd.code == 1008
    # Told first (once per spell over the budget: a slow machine lets the budget refill between
    # spells, and tells it again), closed at last.
    assert "rate_limited" in [frame.get("code") for frame in flood.seen]

    sensor = Device(live_hub.mqtt_url, device.id, device.mqtt_password).connect()
    sensor.send_reading({"temp": 20.5})
    assert quiet.frame(type="readings", device=device.id)["items"][0]["values"] == {"temp": 20.5}
    sensor.go_offline()
