"""What a threshold rule makes of one flush's readings (alarms.conditions): no database."""
from types import SimpleNamespace

import pytest

from alarms.conditions import BETWEEN, BREACH, ENDS, Threshold, ends_after_breach, number, summarize


def rule(op=">", value=80.0, clear_value=None, key="temp"):
    return Threshold(1, key, op, value, clear_value, 0)


def samples(*readings, key="temp"):
    return [SimpleNamespace(ts=ts, values={key: value}) for ts, value in readings]


@pytest.mark.parametrize("op, reading, verdict", [
    (">", 81, BREACH), (">", 80, ENDS), (">=", 80, BREACH), ("<", 79, BREACH), ("<=", 80, BREACH),
    ("<=", 80.5, ENDS), ("==", 80, BREACH), ("==", 80.1, ENDS), ("!=", 80.1, BREACH), ("!=", 80, ENDS),
])
def test_each_operator(op, reading, verdict):
    assert rule(op).verdict(reading) == verdict


def test_with_hysteresis_a_reading_between_the_two_values_neither_breaches_nor_ends():
    hot = rule(">", 80, clear_value=75)
    assert [hot.verdict(value) for value in (81, 78, 75.5, 75, 70)] == [BREACH, BETWEEN, BETWEEN, ENDS, ENDS]
    cold = rule("<", 5, clear_value=8)
    assert [cold.verdict(value) for value in (4, 6, 8, 9)] == [BREACH, BETWEEN, ENDS, ENDS]


def test_only_numbers_count():
    assert [number(value) for value in (1, 2.5, True, False, "3", None, [1])] == [1.0, 2.5, None, None, None, None, None]
    assert summarize(rule(), samples((1, True), (2, "hot"))) is None
    assert summarize(rule(), samples((1, 90), key="other")) is None


def test_a_summary_in_reading_time_order():
    summary = summarize(rule(clear_value=75), samples((5, 90), (1, 85), (2, 70), (3, 78), (4, 81)))
    assert summary.breaches == 3
    assert (summary.last_breach_ts, summary.last_breach_value) == (5, 90.0)
    assert (summary.run_since, summary.run_value) == (4, 81.0)  # 81 then 90: the run the flush ends on
    assert (summary.last_ended_ts, summary.last_unmet_ts) == (2, 3)
    assert ends_after_breach(summary) is None  # breached again after it ended


def test_a_flush_that_ends_after_its_breaches_ends_the_alarm():
    summary = summarize(rule(), samples((1, 81), (2, 60)))
    assert (summary.breaches, summary.run_since, ends_after_breach(summary)) == (1, None, 2)
    assert ends_after_breach(summarize(rule(), samples((3, 10)))) == 3
