"""What a threshold rule makes of readings: pure logic, no database.

A reading's value meets the rule (BREACH), ends an alarm (ENDS: the condition with
`clear_value`, when one is set, in place of `value` no longer holds), or neither (a value
between the two, with hysteresis). Only numbers count: booleans, strings and missing keys are
skipped, so a rule on `temp` ignores a device that sends `"temp": "n/a"`.
"""
import operator
from dataclasses import dataclass

BREACH, BETWEEN, ENDS = "breach", "between", "ends"

OPERATORS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne}


@dataclass(frozen=True)
class Threshold:
    """A threshold rule as the bridge keeps it in memory."""

    id: int
    key: str
    op: str
    value: float
    clear_value: float | None
    for_seconds: int

    def __post_init__(self):
        object.__setattr__(self, "compare", OPERATORS[self.op])
        object.__setattr__(self, "ends_past", self.value if self.clear_value is None else self.clear_value)

    def verdict(self, number):
        if self.compare(number, self.value):
            return BREACH
        if self.compare(number, self.ends_past):
            return BETWEEN
        return ENDS


NUMBERS = (int, float)  # by exact class: a boolean is an int to isinstance(), not here


def number(value):
    """`value` as a float if it is a number a threshold can judge, else None."""
    return float(value) if value.__class__ in NUMBERS else None


@dataclass
class Summary:
    """What one flush's readings of one device say about one rule, in reading time (epoch ms)."""

    breaches: int = 0  # readings that met the condition
    last_breach_ts: int | None = None
    last_breach_value: float | None = None
    run_since: int | None = None  # the first reading of the run of breaches the flush ends on
    run_value: float | None = None
    last_ended_ts: int | None = None  # the newest reading that ends an alarm
    last_unmet_ts: int | None = None  # the newest reading that does not meet the condition


def summarize(rule, samples):
    """A Summary of `samples` (objects with `ts` and a `values` dict) for `rule`, or None when
    none of them carries a number for its key."""
    if len(samples) == 1:  # most flushes hold one message of a device, of one instant
        value = number(samples[0].values.get(rule.key))
        if value is None:
            return None
        readings = ((samples[0].ts, value),)
    else:
        readings = []
        for sample in samples:
            value = number(sample.values.get(rule.key))
            if value is not None:
                readings.append((sample.ts, value))
        if not readings:
            return None
        readings.sort(key=lambda reading: reading[0])
    summary = Summary()
    for ts, value in readings:
        verdict = rule.verdict(value)
        if verdict == BREACH:
            summary.breaches += 1
            summary.last_breach_ts, summary.last_breach_value = ts, value
            if summary.run_since is None:
                summary.run_since, summary.run_value = ts, value
            continue
        summary.run_since = summary.run_value = None
        summary.last_unmet_ts = ts
        if verdict == ENDS:
            summary.last_ended_ts = ts
    return summary


def ends_after_breach(summary):
    """The time of a reading that ends the alarm after the flush's last breach, or None."""
    if summary.last_ended_ts is None:
        return None
    if summary.last_breach_ts is not None and summary.last_ended_ts < summary.last_breach_ts:
        return None
    return summary.last_ended_ts
