"""Per-device budgets in the bridge, on a clock the test turns."""
from bridge.limits import BURST_SECONDS, DeviceBudgets
from tests.manual_clock import Clock


def test_a_device_may_burst_a_minute_of_messages_then_gets_its_rate():
    clock = Clock()
    budgets = DeviceBudgets(messages_per_second=2, bytes_per_second=10_000, clock=clock)
    burst = int(2 * BURST_SECONDS)
    assert all(budgets.allow("noisy", 10) for _ in range(burst))
    assert not budgets.allow("noisy", 10)
    clock.now += 0.5
    assert budgets.allow("noisy", 10)
    assert not budgets.allow("noisy", 10)


def test_one_device_over_budget_does_not_touch_anothers():
    budgets = DeviceBudgets(messages_per_second=1, bytes_per_second=10_000, clock=Clock())
    while budgets.allow("noisy", 1):
        pass
    assert budgets.allow("quiet", 1)


def test_bytes_count_as_well_as_messages():
    clock = Clock()
    budgets = DeviceBudgets(messages_per_second=1000, bytes_per_second=100, clock=clock)
    assert budgets.allow("big", 100 * BURST_SECONDS)
    assert not budgets.allow("big", 1)
    clock.now += 1
    assert budgets.allow("big", 100)
    assert not budgets.allow("big", 100)


def test_a_refused_message_spends_nothing():
    clock = Clock()
    budgets = DeviceBudgets(messages_per_second=1, bytes_per_second=100, clock=clock)
    assert not budgets.allow("big", 100 * BURST_SECONDS + 1)
    assert budgets.allow("big", 100 * BURST_SECONDS)


def test_buckets_of_devices_back_within_budget_are_forgotten():
    clock = Clock()
    budgets = DeviceBudgets(messages_per_second=1, bytes_per_second=100, clock=clock)
    budgets.allow("idle", 1)
    for _ in range(int(BURST_SECONDS)):
        budgets.allow("busy", 1)
    clock.now += 1
    assert budgets.forget_idle() == 1  # "idle" is full again, "busy" is not
    assert budgets.allow("busy", 1) and not budgets.allow("busy", 1)  # still on its budget
    clock.now += BURST_SECONDS
    assert budgets.forget_idle() == 1
