"""How soon an alarm is raised (issue 15: within 1 s, p99, of the reading that triggers it, or of
its for_seconds running out), on a bench Stack: bench.run's `alarm_latency` scenario.

Every device has a threshold rule (`temp > 100`, bench.alarm_rules) and the first `held` a
rule on `heat > 100` that must hold FOR_SECONDS. A background load (bench.publisher, values
that meet no rule) runs on the devices that get no trigger; meanwhile this process publishes,
spread over the run, one triggering reading to each of `held` + `triggers` devices, stamped
with the time it publishes it. It measures, for each alarm raised:
- to stored (the triggering readings' rows, for comparison): from the reading's publish until
  its row is in the database, seen the same way;
- to the row: from the reading's publish (for_seconds: from it running out, the reading's ts
  plus FOR_SECONDS) until the alarm's row is in the database, seen by polling it every
  POLL_SECONDS;
- to the frame: from the same instant until the `alarm` frame arrives on a ws/fleet/ socket
  subscribed to every device.
"""
import threading
import time

import orjson
from websockets.sync.client import connect

from bench.alarm_rules import HELD_NAME, NAME, VALUE
from bench.prepare import device_ids
from bench.publisher import Connection, publish_packet, utf8_string
from bench.stats import Histogram
from bridge.mqtt import parse_mqtt_url

FOR_SECONDS = 2
TRIGGER = VALUE + 50.0  # the load's values are 15-25
STORED = "stored"  # RowWatch.stored's name for a triggering reading stored
POLL_SECONDS = 0.02
TRIGGER_ACCOUNT = "load-3"  # bench.stack's last gateway login: bench.run's loads below 30,000/s never take it
SETTLE_SECONDS = 1.0  # of load before the first trigger
WAIT_SECONDS = 15.0  # after the last trigger's alarm is due, for stragglers


class FirstSeen:
    """When each (device, rule name) was first seen, by this process's clock."""

    def __init__(self):
        self.at = {}
        self._lock = threading.Lock()

    def note(self, device_id, rule_name, at):
        with self._lock:
            self.at.setdefault((device_id, rule_name), at)


class RowWatch(FirstSeen):
    """Polls the hub's database for new alarm rows, and in `stored` notes when each triggering
    reading was stored (whichever rule it is for)."""

    def __init__(self, stack):
        super().__init__()
        self.stack = stack
        self.stored = FirstSeen()
        self.last_alarm = max([0] + [alarm_id for alarm_id, _, _ in stack.new_alarms(0)])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self):
        while not self._stop.wait(POLL_SECONDS):
            stored, alarms = self.stack.devices_whose_latest_is(TRIGGER), self.stack.new_alarms(self.last_alarm)
            now = time.time()
            for device_id in stored:  # a triggering reading is the newest of its device's key
                self.stored.note(device_id, STORED, now)
            for self.last_alarm, device_id, rule_name in alarms:
                self.note(device_id, rule_name, now)

    def stop(self):
        self._stop.set()
        self._thread.join()


class FleetSocket(FirstSeen):
    """A ws/fleet/ socket subscribed to every device, noting the first `active` alarm frame of
    each device and rule (other frames are skipped unparsed)."""

    def __init__(self, stack):
        super().__init__()
        url = stack.url.replace("http", "ws", 1)
        self.socket = connect(f"{url}/ws/fleet/", additional_headers={"Cookie": stack.cookie}, origin=stack.url,
                              max_size=None)
        self.socket.send('{"action": "subscribe", "devices": "*"}')
        self.socket.recv(timeout=30)  # the snapshot: subscribed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        while not self._stop.is_set():
            try:
                message = self.socket.recv(timeout=0.2)
            except TimeoutError:
                continue
            now = time.time()
            if '"alarm"' not in message:
                continue
            message = orjson.loads(message)
            for frame in message["frames"] if message["type"] == "batch" else [message]:
                if frame["type"] == "alarm" and frame["alarm"]["state"] == "active":
                    self.note(frame["alarm"]["device"], frame["alarm"]["rule"]["name"], now)

    def stop(self):
        self._stop.set()
        self._thread.join()
        self.socket.close()


def plan_triggers(held, count):
    """(device id, rule name, key) of each triggering reading, the held rules' interleaved."""
    devices = device_ids(held + count)
    plan = [(device_id, NAME, "temp") for device_id in devices[held:]]
    for number, device_id in enumerate(devices[:held]):
        plan.insert(round(number * count / held) + number, (device_id, HELD_NAME, "heat"))
    return plan


def publish_triggers(url, plan, seconds):
    """Publishes each planned reading (QoS 1) at its turn over `seconds`, stamped with the time
    it goes out; returns {(device id, rule name): publish time}."""
    connection = Connection(parse_mqtt_url(url))
    connection.connect()
    published = {}
    started = time.time()
    for number, (device_id, rule_name, key) in enumerate(plan, 1):
        time.sleep(max(0.0, started + number * seconds / len(plan) - time.time()))
        connection.read()
        now = time.time()
        reading = {"ts": int(now * 1000), "values": {key: TRIGGER}}
        connection.take_id(number)
        connection.write(publish_packet(utf8_string(f"devices/{device_id}/telemetry"), orjson.dumps(reading), 1, number))
        published[(device_id, rule_name)] = int(now * 1000) / 1000
    connection.close()
    return published


def latencies(published, seen, rule_name, after, seen_as=None):
    """A Histogram of (seen - published - `after`) in ms for the rule's alarms (seen under
    `seen_as` in place of the rule's name, if given), and the number of them never seen."""
    histogram, missing = Histogram(), 0
    for (device_id, name), at in published.items():
        if name != rule_name:
            continue
        key = (device_id, rule_name if seen_as is None else seen_as)
        if key in seen.at:
            histogram.add((seen.at[key] - at - after) * 1000)
        else:
            missing += 1
    return histogram, missing


def set_rules(stack, held):
    """The rules, the bridge restarted on them (it loads them before it judges a reading)."""
    stack.stop_bridge()
    stack.run_python("-m", "bench.alarm_rules", "--devices", str(stack.devices), "--held", str(held),
                     "--for-seconds", str(FOR_SECONDS))
    stack.start_bridge()


def measure(stack, load, triggers, held, seconds, log=print):
    """Runs the load and the triggers on the rules set_rules() made, and returns the figures."""
    plan = plan_triggers(held, triggers)
    quiet = len(plan)  # the devices from here on carry the load
    rows, fleet = RowWatch(stack), FleetSocket(stack)
    background = stack.spawn("-m", "bench.publisher", "--url", stack.login_url("load-0"), "--first", str(quiet),
                             "--devices", str(stack.devices - quiet), "--rate", str(load),
                             "--seconds", str(seconds + 2 * SETTLE_SECONDS), name="publisher-0")
    try:
        time.sleep(SETTLE_SECONDS)
        log(f"alarm_latency: {len(plan)} triggering readings over {seconds} s, {load:,} readings/s of load beside")
        published = publish_triggers(stack.login_url(TRIGGER_ACCOUNT), plan, seconds)
        deadline = time.time() + FOR_SECONDS + WAIT_SECONDS
        while time.time() < deadline and not all(key in rows.at and key in fleet.at for key in published):
            time.sleep(0.1)
    finally:
        fleet.stop()
        rows.stop()
        out, err = background.communicate(timeout=120)
    if background.returncode:
        raise RuntimeError(f"the background load failed:\n{err[-3000:]}")
    figures = {"rules": stack.devices + held, "load_per_s": load, "triggers": triggers, "held": held,
               "for_seconds": FOR_SECONDS, "row_poll_ms": POLL_SECONDS * 1000,
               "load_published": orjson.loads(out.strip().splitlines()[-1])["published"]}
    histogram, missing = latencies(published, rows.stored, NAME, 0, seen_as=STORED)
    figures["reading_to_stored"] = {**histogram.summary(), "missing": missing}
    for name, rule_name, after in (("reading", NAME, 0), ("for_seconds", HELD_NAME, FOR_SECONDS)):
        for target, seen in (("row", rows), ("frame", fleet)):
            histogram, missing = latencies(published, seen, rule_name, after)
            figures[f"{name}_to_{target}"] = {**histogram.summary(), "missing": missing}
    return figures


def remove_rules(stack):
    """Removes the rules with no bridge writing alarms of theirs meanwhile (SQLite checks the
    foreign keys of a delete at its commit)."""
    stack.stop_bridge()
    stack.run_python("-m", "bench.alarm_rules", "--remove")
    stack.start_bridge()
