from bridge.clock import ReceiveClock
from bridge.protocol import parse_telemetry


class FrozenTime:
    def __init__(self, seconds):
        self.seconds = seconds

    def __call__(self):
        return self.seconds


def test_messages_in_the_same_millisecond_get_rising_receive_times_per_device():
    time = FrozenTime(1_764_000_000.0005)
    clock = ReceiveClock(time)
    assert [clock.now("a"), clock.now("a"), clock.now("b"), clock.now("a")] == [
        1_764_000_000_000, 1_764_000_000_001, 1_764_000_000_000, 1_764_000_000_002,
    ]
    time.seconds += 1
    assert clock.now("a") == 1_764_000_001_000


def test_a_list_without_timestamps_takes_consecutive_milliseconds_and_the_next_message_follows():
    clock = ReceiveClock(FrozenTime(1_764_000_000.0))
    now_ms = clock.now("a")
    samples = parse_telemetry(b'[{"t": 1}, {"ts": 1763999999000, "values": {"t": 2}}, {"t": 3}]', now_ms, 65536)
    assert [sample.ts for sample in samples] == [now_ms, 1763999999000, now_ms + 1]
    clock.used("a", now_ms + len(samples) - 1)
    assert clock.now("a") == now_ms + 3


def test_the_clock_forgets_devices_it_no_longer_needs():
    time = FrozenTime(1_764_000_000.0)
    clock = ReceiveClock(time)
    for number in range(10_001):
        clock.now(f"device-{number}")
    time.seconds += 1
    assert clock.now("device-0") == 1_764_000_001_000
    assert len(clock._last) == 1
