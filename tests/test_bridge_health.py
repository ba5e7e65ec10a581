"""The bridge unattended, with real processes: a crashing task is logged and started again, the
heartbeat file is touched only while the bridge is connected, storing and sweeping commands,
and while the database is away the backlog waits at the broker, not in the bridge's memory.
docs/reliability.md describes each."""
import contextlib
import os
import re
import time

import orjson
import psycopg
import pytest
from django.conf import settings
from django.utils import timezone

from alarms.models import Alarm, AlarmChange, AlarmRule
from devices.models import Command
from devices.models import Device as RegisteredDevice
from telemetry.models import Reading
from tests.conftest import running_hub
from tests.live import Device, database_url, execute_sql, wait_until
# broker: a fixture, a Mosquitto of each test's own (one test stops it).
from tests.test_faults import FAST_DEVICE, Publisher, broker, database_locked, stored_count, stored_ts  # noqa: F401

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

HEARTBEAT_SECONDS = 5  # bridge.bridge.HEARTBEAT_SECONDS
STALL_SECONDS = 2


@pytest.fixture
def hub(django_db_setup, redis_server, broker, tmp_path):
    """A hub whose bridge calls it a stall after two seconds, and waits only a second for a lock."""
    (tmp_path / "hub").mkdir()
    yield from running_hub(redis_server, broker, tmp_path / "hub", bridge_stall_seconds=STALL_SECONDS,
                           db_lock_timeout=1, **FAST_DEVICE)


@contextlib.contextmanager
def database_unavailable():
    """The hub cannot write readings or statuses until the block ends: on SQLite another
    connection holds the write lock (the bridge's writes fail after HUB_DB_LOCK_TIMEOUT); on
    PostgreSQL it locks their tables against writes (the bridge's writes wait)."""
    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        with database_locked():
            yield
        return
    with psycopg.connect(database_url(database)) as holder:
        holder.execute(f"LOCK TABLE {Reading._meta.db_table}, {RegisteredDevice._meta.db_table} IN EXCLUSIVE MODE")
        yield
        holder.rollback()


def heartbeat_age(hub):
    """Seconds since the bridge last touched its heartbeat file (infinite before the first)."""
    try:
        return time.time() - os.path.getmtime(hub.workdir / "bridge.heartbeat")
    except FileNotFoundError:
        return float("inf")


def wait_for_heartbeat_stale(hub, log):
    """The bridge says why it stopped the heartbeat, and the file then ages past a health check's
    patience (the heartbeat interval and a second)."""
    stopped = hub.bridge.wait_for_log(r"heartbeat stopped: (.*)", start=log, timeout=20)
    wait_until(lambda: heartbeat_age(hub) > HEARTBEAT_SECONDS + 1, timeout=20, message="a stale heartbeat")
    return stopped.group(1)


def wait_for_heartbeat_fresh(hub, log):
    hub.bridge.wait_for_log(r"heartbeat resumed", start=log, timeout=20)
    assert heartbeat_age(hub) < HEARTBEAT_SECONDS


def test_a_crashing_command_sweep_is_logged_and_run_again_and_the_heartbeat_shows_the_stall(hub, device):
    sensor = Device(hub.mqtt_url, device.id, device.mqtt_password).connect()
    wait_until(lambda: RegisteredDevice.objects.get(pk=device.pk).online, message="the device online")
    wait_until(lambda: heartbeat_age(hub) < HEARTBEAT_SECONDS, message="a fresh heartbeat")
    log = len(hub.bridge.log())
    # A bug hit on every pass: a pending command the ORM cannot read, an impossible date written
    # behind its back (SQLite keeps what it is given; PostgreSQL would refuse it). It sorts
    # first, so each sweep crashes on it before the command behind it. It is made pending and
    # impossible in one statement: a sweep between two would send it while it is still readable.
    poison = Command.objects.create(device=device, name="poison", params={}, ttl=60, status=Command.Status.EXPIRED)
    execute_sql(settings.DATABASES["default"],
                f"UPDATE {Command._meta.db_table} SET expires_at = %s, status = %s WHERE id = %s",
                ["2099-13-01 00:00:00", Command.Status.PENDING, poison.id.hex])
    good = Command.objects.create(device=device, name="reboot", params={}, ttl=60)

    # Logged with its traceback, and run again, and again.
    hub.bridge.wait_for_log(
        r"task command_sweep crashed\nTraceback[^\n]*\n(  [^\n]*\n)+ValueError: month must be in 1\.\.12", start=log
    )
    hub.bridge.wait_for_log(r"restarting task command_sweep in [\d.]+ s \(crash 2 in a row\)", start=log)
    assert "the command sweep has not completed a pass" in wait_for_heartbeat_stale(hub, log)
    sensor.no_command(within=0)

    # The operator removes the bad row: the next run of the sweep completes, and sends the
    # command behind it.
    execute_sql(settings.DATABASES["default"], f"DELETE FROM {Command._meta.db_table} WHERE id = %s", [poison.id.hex])
    assert sensor.next_command(timeout=40)["id"] == str(good.id)
    wait_for_heartbeat_fresh(hub, log)
    sensor.go_offline()


@pytest.mark.postgres
def test_the_heartbeat_stops_while_the_database_is_locked_or_the_broker_is_away(hub, broker, device):
    sensor = Device(hub.mqtt_url, device.id, device.mqtt_password).connect()
    wait_until(lambda: heartbeat_age(hub) < HEARTBEAT_SECONDS, message="a fresh heartbeat")
    log = len(hub.bridge.log())
    with database_unavailable():
        sensor.send_reading({"n": 1}, ts=int(time.time() * 1000))
        assert "a reading has waited" in wait_for_heartbeat_stale(hub, log)
    wait_for_heartbeat_fresh(hub, log)
    assert stored_count(device) == 1

    log = len(hub.bridge.log())
    broker.stop()
    assert wait_for_heartbeat_stale(hub, log) == "not connected to the broker"
    broker.start()
    wait_for_heartbeat_fresh(hub, log)


MAX_HELD = 50
MAX_BACKGROUND_TASKS = 1000  # bridge.bridge.MAX_BACKGROUND_TASKS


@pytest.fixture
def small_hub(django_db_setup, redis_server, broker, tmp_path):
    """A hub whose bridge holds at most 50 readings unstored."""
    (tmp_path / "hub").mkdir()
    yield from running_hub(redis_server, broker, tmp_path / "hub", bridge_max_held_readings=MAX_HELD,
                           db_lock_timeout=1, **FAST_DEVICE)


def stats(hub, start):
    """The bridge's stats lines after offset `start`: each a dict of its counts (received, held,
    oldest_held_s, background, ...) and `reading`, on or paused."""
    return [
        {key: value if key == "reading" else float(value) for key, value in re.findall(r"(\w+)=([\w.]+)", line)}
        for line in re.findall(r"stats: (.*)", hub.bridge.log()[start:])
    ]


@pytest.mark.postgres
def test_while_the_database_is_locked_the_backlog_waits_at_the_broker_and_is_stored_once_after(small_hub, device):
    hub = small_hub
    sensor = Device(hub.mqtt_url, device.id, device.mqtt_password).connect()
    first = Publisher(sensor, MAX_HELD - 1)
    backlog = Publisher(sensor, 10 * MAX_HELD)
    backlog.start_ts = first.start_ts + first.count
    log = len(hub.bridge.log())
    with database_unavailable():
        first.run()
        wait_until(lambda: any(line["held"] == MAX_HELD - 1 for line in stats(hub, log)),
                   message=f"{MAX_HELD - 1} readings held")
        # QoS 0 cannot wait at the broker: five readings more than the bridge may hold are dropped.
        sensor.publish(sensor.topic("telemetry"), orjson.dumps({"ts": first.start_ts - 1, "values": dict.fromkeys("abcde", 1)}), qos=0)
        hub.bridge.wait_for_log(r"dropped a message from device .*: backlog_full", start=log)
        backlog.run()
        wait_until(lambda: any(line["reading"] == "paused" for line in stats(hub, log)), message="reading paused")
        paused_at = len(hub.bridge.log())
        wait_until(lambda: len(stats(hub, paused_at)) >= 3, message="three stats lines while paused")
        during = stats(hub, log)
        assert max(line["held"] for line in during) <= MAX_HELD
        # The age of what is held grows (a line within 50 ms of the first held reading says 0.0).
        assert during[-1]["held"] and during[-1]["oldest_held_s"] > 0
        # The broker holds the rest: the bridge has read little more than it holds.
        assert max(line["received"] for line in during) < MAX_HELD + 10
        assert stored_count(device) == 0

    wait_until(lambda: stored_count(device) == first.count + backlog.count, timeout=30, message="the backlog stored")
    assert stored_ts(device) == first.expected() + backlog.expected()
    resumed = len(hub.bridge.log())
    wait_until(lambda: any(line["reading"] == "on" and line["held"] == 0 for line in stats(hub, resumed)),
               message="reading resumed, nothing held")
    sensor.go_offline()


@pytest.mark.postgres
def test_while_the_database_is_locked_status_messages_wait_at_the_broker_too(small_hub, device):
    hub = small_hub
    sensor = Device(hub.mqtt_url, device.id, device.mqtt_password).connect()
    statuses = MAX_BACKGROUND_TASKS + 100
    log = len(hub.bridge.log())
    with database_unavailable():
        for n in range(statuses):
            sensor.publish(sensor.topic("status"), b"offline" if n % 2 else b"online")
        wait_until(lambda: any(line["reading"] == "paused" for line in stats(hub, log)), message="reading paused")
        paused_at = len(hub.bridge.log())
        wait_until(lambda: len(stats(hub, paused_at)) >= 2, message="two stats lines while paused")
        during = stats(hub, log)
        assert max(line["background"] for line in during) == MAX_BACKGROUND_TASKS
        assert max(line["received"] for line in during) < statuses
    wait_until(lambda: any(line["received"] >= statuses and line["background"] == 0 and line["reading"] == "on"
                           for line in stats(hub, log)), timeout=60, message="every status handled")
    sensor.go_offline()


def test_stalled_alarm_tasks_stop_the_heartbeat_until_they_complete_a_pass_again(hub, device, owner):
    """A bug hit on every pass of the alarm timers, then of the notifier: a rule, then an alarm
    change, whose time the ORM cannot read (written behind its back, as above)."""
    database = settings.DATABASES["default"]
    wait_until(lambda: heartbeat_age(hub) < HEARTBEAT_SECONDS, message="a fresh heartbeat")
    log = len(hub.bridge.log())
    rule = AlarmRule.objects.create(owner=owner, name="poison", kind="threshold", key="temp", op=">", value=80)
    execute_sql(database, f"UPDATE {AlarmRule._meta.db_table} SET changed = %s WHERE id = %s",
                ["2099-13-01 00:00:00", rule.pk])
    hub.bridge.wait_for_log(r"task alarm_timers crashed\nTraceback[^\n]*\n(  [^\n]*\n)+ValueError: month must be in 1\.\.12",
                            start=log)
    assert "the alarm timers have not completed a pass" in wait_for_heartbeat_stale(hub, log)
    execute_sql(database, f"UPDATE {AlarmRule._meta.db_table} SET changed = %s WHERE id = %s",
                [timezone.now().strftime("%Y-%m-%d %H:%M:%S.%f"), rule.pk])
    wait_for_heartbeat_fresh(hub, log)

    log = len(hub.bridge.log())
    alarm = Alarm.objects.create(rule=rule, device=device, severity=rule.severity, raised_at=timezone.now())
    execute_sql(database, f"INSERT INTO {AlarmChange._meta.db_table} (alarm_id, event, comment, at) VALUES (%s, %s, '', %s)",
                [alarm.pk, "raised", "2099-13-01 00:00:00"])
    hub.bridge.wait_for_log(r"task alarm_notifier crashed", start=log)
    assert "the alarm notifier has not completed a pass" in wait_for_heartbeat_stale(hub, log)
    execute_sql(database, f"DELETE FROM {AlarmChange._meta.db_table} WHERE alarm_id = %s", [alarm.pk])
    wait_for_heartbeat_fresh(hub, log)
