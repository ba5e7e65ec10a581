"""Silence and offline rules judged by one pass of the bridge's timer (alarms.changes.check_timed),
in process against the database: who is quiet, one alarm per quiet spell, cleared once the
device is back; and a pass reads the same few times however many rules there are. The real
bridge's timer is in tests/test_alarm_evaluation.py."""
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from alarms.changes import check_timed
from alarms.models import Alarm, AlarmRule
from alarms.rule_cache import load_rules
from devices.models import Device
from telemetry.models import LatestValue
from tests.live import unique_id

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def ms(moment):
    return int(moment.timestamp() * 1000)


def rule(owner, devices=(), **fields):
    fields.setdefault("seconds", 60)
    made = AlarmRule.objects.create(owner=owner, name=unique_id("rule"), **fields)
    made.devices.set(devices)
    return made


def timed():
    return load_rules().timed


def alarms(made, state=None):
    found = Alarm.objects.filter(rule=made)
    if state:
        found = found.filter(state=state)
    return sorted(found.values_list("device_id", flat=True))


def spoke(device, at, key="temp"):
    LatestValue.objects.update_or_create(device=device, key=key, defaults={"ts": ms(at), "kind": "n", "num": 1.0})
    Device.objects.filter(pk=device.pk).update(last_seen=at)


def test_who_is_quiet_raises_once_a_spell_and_clears_once_back(owner, make_device):
    now = timezone.now() + timedelta(seconds=120)  # every device registered two minutes ago
    quiet, talking, never = (make_device(unique_id(name), owner) for name in ("quiet", "talking", "never"))
    spoke(quiet, now - timedelta(seconds=90))
    spoke(talking, now - timedelta(seconds=10))
    Device.objects.filter(pk=quiet.pk).update(online=True)
    silent_temp = rule(owner, [quiet, talking], kind="silence", key="temp")
    silent = rule(owner, kind="silence")  # every device of the owner's, now or later
    offline = rule(owner, kind="offline")
    rules = timed()

    assert check_timed(rules, now) == (4, 0)
    assert alarms(silent_temp) == [quiet.pk]
    assert alarms(silent) == sorted([quiet.pk, never.pk])
    assert alarms(offline) == [never.pk]
    assert Alarm.objects.get(rule=silent, device=never).last_at == never.created  # quiet since registered
    assert check_timed(rules, now) == (0, 0)  # the same spell: no second alarm

    spoke(quiet, now - timedelta(seconds=5))
    Device.objects.filter(pk=never.pk).update(online=True)
    later = make_device(unique_id("later"), owner)  # after the rules were loaded
    assert check_timed(rules, now) == (2, 3)
    assert alarms(silent_temp, "active") == [] and alarms(offline, "active") == [later.pk]
    assert alarms(silent, "active") == sorted([never.pk, later.pk])  # online, but it never sent a reading

    Device.objects.filter(pk=quiet.pk).update(online=False)
    assert check_timed(rules, now + timedelta(seconds=120)) == (6, 0)  # quiet and talking both fall silent
    assert alarms(silent_temp) == sorted([quiet.pk, quiet.pk, talking.pk])  # a new spell: a new alarm
    assert alarms(offline, "active") == sorted([quiet.pk, talking.pk, later.pk])


def test_a_pass_reads_as_often_with_many_rules_as_with_one_of_each(owner, make_device):
    now = timezone.now()
    devices = [make_device(unique_id("sensor"), owner) for _ in range(3)]
    for device in devices:
        spoke(device, now)
        Device.objects.filter(pk=device.pk).update(online=True)

    def reads():
        rules = timed()
        with CaptureQueriesContext(connection) as queries:
            assert check_timed(rules, now) == (0, 0)
        return len(queries)

    rule(owner, [devices[0]], kind="silence", key="temp")
    rule(owner, kind="silence")
    rule(owner, kind="offline")
    few = reads()
    for device in devices:
        rule(owner, [device], kind="silence", key=unique_id("key"))
        rule(owner, [device], kind="silence")
        rule(owner, [device], kind="offline")
        rule(owner, kind="offline", seconds=300)
    assert len(timed()) == 15
    assert reads() == few <= 4
