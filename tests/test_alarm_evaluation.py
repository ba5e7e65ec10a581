"""Alarms raised and cleared by the real bridge from MQTT readings, statuses and silence, and
their frames on real dashboards (docs/protocol.md, "Alarms"). One hub for the module; its
bridge is in a `$share` group, so a second bridge can join it."""
import time

import pytest
from django.utils import timezone

from alarms.models import Alarm, AlarmChange, AlarmRule, PendingCondition
from telemetry.models import Reading
from tests.conftest import PASSWORD, running_hub
from tests.test_faults import stored_by
from tests.live import Device, execute_sql, unique_id, wait_until

pytestmark = [pytest.mark.live, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def hub(django_db_setup, redis_server, mosquitto_server, tmp_path_factory):
    yield from running_hub(redis_server, mosquitto_server, tmp_path_factory.mktemp("hub"),
                           mqtt_shared_group="alarms", device_max_messages_per_second=100_000)


def make_rule(hub, owner, devices=(), bridges=(), **fields):
    """A rule, once every bridge has loaded it."""
    bridges = bridges or [hub.bridge]
    starts = [len(bridge.log()) for bridge in bridges]
    rule = AlarmRule.objects.create(owner=owner, name=unique_id("rule"), **fields)
    rule.devices.set(devices)
    AlarmRule.objects.filter(pk=rule.pk).update(changed=timezone.now())  # as the API does
    for bridge, start in zip(bridges, starts):
        bridge.wait_for_log(r"alarm rules loaded", start=start)
    return rule


def alarm_frame(dashboard, **match):
    """The next alarm frame whose alarm has these fields."""
    deadline = time.monotonic() + 10
    while True:
        frame = dashboard.frame(timeout=max(0.1, deadline - time.monotonic()), type="alarm")
        if all(frame["alarm"].get(key) == value for key, value in match.items()):
            return frame["alarm"]


def now_ms():
    return int(time.time() * 1000)


@pytest.fixture
def watched(hub, device, owner):
    """The owner's device socket and fleet socket on the device, and the sensor."""
    cookie = hub.login(owner.username, PASSWORD)
    single = hub.dashboard(f"ws/devices/{device.id}/", cookie)
    single.frame(type="snapshot")
    fleet = hub.dashboard("ws/fleet/", cookie)
    fleet.send(action="subscribe", devices="*")
    fleet.frame(type="snapshot", device=device.id)
    sensor = Device(hub.mqtt_url, device.id, device.mqtt_password).connect()
    yield single, fleet, sensor
    if sensor.client.is_connected():
        sensor.go_offline()


def test_a_threshold_with_hysteresis_raises_counts_and_clears_and_only_watchers_see_it(
        hub, device, owner, make_user, make_device, watched):
    single, fleet, sensor = watched
    stranger = make_user(unique_id("stranger"))
    make_device(unique_id("theirs"), stranger)
    other = hub.dashboard("ws/fleet/", hub.login(stranger.username, PASSWORD))
    other.send(action="subscribe", devices="*")
    other.frame(type="snapshot")
    rule = make_rule(hub, owner, [device], kind="threshold", key="temp", op=">", value=80, clear_value=75,
                     severity="critical")

    ts = now_ms()
    sensor.send_reading({"temp": 81, "mode": "eco"}, ts=ts)
    raised = alarm_frame(single, state="active")
    assert raised == {
        "id": raised["id"], "rule": {"id": rule.pk, "name": rule.name}, "device": device.id, "severity": "critical",
        "state": "active", "acknowledged": False, "acknowledged_by": None, "raised_at": ts, "cleared_at": None,
        "count": 1, "last_value": 81.0,
    }
    assert alarm_frame(fleet, state="active")["id"] == raised["id"]

    sensor.send_reading({"temp": 90}, ts=ts + 1)
    assert alarm_frame(single, count=2)["last_value"] == 90.0
    sensor.send_reading({"temp": 78}, ts=ts + 2)  # between clear_value and value: stays active
    sensor.send_reading({"temp": 85}, ts=ts + 3)
    assert alarm_frame(single, count=3)["id"] == raised["id"]
    sensor.send_reading({"temp": 74.5}, ts=ts + 4)
    cleared = alarm_frame(single, state="cleared")
    assert (cleared["id"], cleared["cleared_at"]) == (raised["id"], ts + 4)
    sensor.send_reading({"temp": 99, "mode": "on"}, ts=ts + 5)
    again = alarm_frame(fleet, state="active", count=1)
    assert again["id"] != raised["id"]

    alarms = Alarm.objects.filter(rule=rule).order_by("id")
    assert [(alarm.state, alarm.count) for alarm in alarms] == [("cleared", 3), ("active", 1)]
    assert [change.event for change in AlarmChange.objects.filter(alarm__rule=rule)] == ["raised", "cleared", "raised"]
    # Non-numbers never count: "mode" is a string, a boolean temp is skipped.
    sensor.send_reading({"temp": True}, ts=ts + 6)
    wait_until(lambda: Reading.objects.filter(device=device, ts=ts + 6).exists(), message="the boolean stored")
    other.no_frame(within=0.5, type="alarm")
    assert not [frame for frame in other.seen if frame["type"] == "alarm"]


def test_for_seconds_raises_once_the_condition_held_that_long_and_not_if_it_ended(hub, device, owner, watched):
    single, _, sensor = watched
    rule = make_rule(hub, owner, [device], kind="threshold", key="hum", op=">=", value=50, for_seconds=1)

    ts = now_ms()
    sensor.send_reading({"hum": 55}, ts=ts)
    wait_until(lambda: PendingCondition.objects.filter(rule=rule, device=device, since=ts).exists(),
               message="the condition noted as holding")
    sensor.send_reading({"hum": 40}, ts=ts + 1)
    wait_until(lambda: not PendingCondition.objects.filter(rule=rule).exists(), message="the condition dropped")

    started = now_ms()
    sensor.send_reading({"hum": 60}, ts=started)
    sensor.send_reading({"hum": 61}, ts=started + 1)
    raised = alarm_frame(single, state="active")
    assert raised["raised_at"] == started + 1000 and raised["rule"]["id"] == rule.pk
    sensor.send_reading({"hum": 49}, ts=started + 2)  # no clear_value: clears once it stops holding
    assert alarm_frame(single, state="cleared")["id"] == raised["id"]
    assert Alarm.objects.filter(rule=rule).count() == 1


def test_silence_and_offline_raise_on_a_timer_and_clear_when_the_device_is_back(hub, device, owner, watched):
    single, _, sensor = watched
    sensor.send_reading({"temp": 20})
    silence = make_rule(hub, owner, [device], kind="silence", key="temp", seconds=1, severity="warning")
    offline = make_rule(hub, owner, [], kind="offline", seconds=1)  # every device of the owner's

    silent = alarm_frame(single, state="active", rule={"id": silence.pk, "name": silence.name})
    assert silent["severity"] == "warning"
    sensor.send_reading({"temp": 21})
    assert alarm_frame(single, state="cleared")["id"] == silent["id"]

    sensor.go_offline()
    gone = alarm_frame(single, state="active", rule={"id": offline.pk, "name": offline.name})
    sensor = Device(hub.mqtt_url, device.id, device.mqtt_password).connect()
    assert alarm_frame(single, state="cleared", rule={"id": offline.pk, "name": offline.name})["id"] == gone["id"]
    sensor.go_offline()
    assert alarm_frame(single, state="active", rule={"id": offline.pk, "name": offline.name})["id"] != gone["id"]
    # One alarm per spell of silence: raised once more only because the device fell silent again.
    assert Alarm.objects.filter(rule=silence).count() == 2


def refuse_alarms_of(database, device_id):
    """Has the database refuse every new alarm of one device, as a broken evaluation would fail."""
    table = Alarm._meta.db_table
    if database["ENGINE"] == "django.db.backends.sqlite3":
        execute_sql(database, f"CREATE TRIGGER refuse_alarm BEFORE INSERT ON {table} WHEN NEW.device_id = '{device_id}' "
                              "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")
        return lambda: execute_sql(database, "DROP TRIGGER refuse_alarm")
    execute_sql(database, f"CREATE FUNCTION refuse_alarm() RETURNS trigger AS $$ BEGIN IF NEW.device_id = '{device_id}' "
                          "THEN RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql")
    execute_sql(database, f"CREATE TRIGGER refuse_alarm BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION refuse_alarm()")
    return lambda: execute_sql(database, f"DROP TRIGGER refuse_alarm ON {table}; DROP FUNCTION refuse_alarm()")


def test_evaluation_that_fails_stops_no_reading_and_carries_on(hub, device, owner, make_device):
    second = make_device(unique_id("sensor"), owner)
    rule = make_rule(hub, owner, [device, second], kind="threshold", key="temp", op=">", value=80)
    allow = refuse_alarms_of(hub.database, device.id)
    start = len(hub.bridge.log())
    try:
        sensor = Device(hub.mqtt_url, device.id, device.mqtt_password).connect()
        ts = now_ms()
        for offset in range(20):
            sensor.send_reading({"temp": 90 + offset}, ts=ts + offset)
        hub.bridge.wait_for_log(r"alarm evaluation failed", start=start)
        wait_until(lambda: Reading.objects.filter(device=device).count() == 20, message="every reading stored")
        other = Device(hub.mqtt_url, second.id, second.mqtt_password).connect()
        other.send_reading({"temp": 95})
        wait_until(lambda: Alarm.objects.filter(rule=rule, device=second).exists(), message="the other alarm raised")
    finally:
        allow()
    sensor.send_reading({"temp": 91}, ts=ts + 100)
    wait_until(lambda: Alarm.objects.filter(rule=rule, device=device).exists(), message="raised once allowed")
    assert Reading.objects.filter(device=device).count() == 21
    sensor.go_offline()
    other.go_offline()


def test_two_bridges_and_a_restart_make_one_alarm_at_a_time_and_miss_no_clear(hub, device, owner):
    other = hub.another_bridge("second-bridge")
    try:
        bridges = [hub.bridge, other]
        rule = make_rule(hub, owner, [device], bridges, kind="threshold", key="temp", op=">", value=80)
        held = make_rule(hub, owner, [device], bridges, kind="threshold", key="hum", op=">", value=50, for_seconds=1)
        sensor = Device(hub.mqtt_url, device.id, device.mqtt_password).connect()
        ts = now_ms()
        for offset in range(40):
            sensor.send_reading({"temp": 81 + offset % 5}, ts=ts + offset)
        wait_until(lambda: Alarm.objects.filter(rule=rule, count=40).exists(), message="40 crossings on one alarm")
        wait_until(lambda: stored_by(hub.bridge) and stored_by(other), message="both bridges storing readings")

        # Breaches and ends in turn, split between the bridges, the last one an end.
        for offset in range(40):
            sensor.send_reading({"temp": 70 if offset % 2 else 90}, ts=ts + 100 + offset)
        wait_until(lambda: Reading.objects.filter(device=device, key="temp").count() == 80, message="all stored")
        wait_until(lambda: not Alarm.objects.filter(rule=rule, state="active").exists(), message="the last end clearing")

        # The condition noted, then one bridge restarted before for_seconds runs out: one alarm.
        sensor.send_reading({"hum": 60}, ts=now_ms())
        wait_until(lambda: PendingCondition.objects.filter(rule=held).exists(), message="the condition noted")
        hub.bridge.stop()
        hub.start_bridge()
        wait_until(lambda: Alarm.objects.filter(rule=held).exists(), message="the held condition raising")
        for offset in range(10):
            sensor.send_reading({"temp": 85, "hum": 70}, ts=now_ms() + offset)
        wait_until(lambda: Alarm.objects.filter(rule=rule, state="active", count=10).exists(), message="a new alarm counting")
        assert Alarm.objects.filter(rule=held).count() == 1
        sensor.go_offline()
    finally:
        other.stop()
