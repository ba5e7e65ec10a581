"""The dashboards' send pace, on a clock the test moves."""
from telemetry.pacing import SendPace
from tests.manual_clock import Clock


def test_a_socket_that_sends_now_and_then_never_waits():
    clock = Clock()
    pace = SendPace(rate=20, burst=3, clock=clock)
    for _ in range(50):
        assert pace.delay() == 0
        clock.now += 0.06  # 16 sends a second, under the rate


def test_a_burst_goes_at_once_and_the_send_after_it_waits_one_interval():
    clock = Clock()
    pace = SendPace(rate=20, burst=3, clock=clock)
    assert [pace.delay() for _ in range(3)] == [0, 0, 0]
    assert round(pace.delay(), 6) == 0.05


def test_a_socket_kept_busy_sends_at_the_rate_on_average():
    clock = Clock()
    pace = SendPace(rate=20, burst=3, clock=clock)
    start = clock.now
    for _ in range(203):
        clock.now += pace.delay()  # the sender sleeps, then sends
    assert round(clock.now - start, 6) == 10.0  # 203 sends: 3 at once, then 200 at 20 a second
