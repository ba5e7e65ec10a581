"""Simulated sensors: realistic readings over MQTT, status with a last will, and answers to
commands (ping, set_interval, reboot). Each is one MQTT client on the running event loop."""
import asyncio
import logging
import math
import random
import time

import orjson

from bridge.mqtt import MqttConnection
from bridge.protocol import COMMAND_RESULT, STATUS, TELEMETRY, commands_topic, device_topic

logger = logging.getLogger("simulator")

MIN_INTERVAL = 0.05
MAX_INTERVAL = 3600.0
REBOOT_SECONDS = 2.0


class SimulatedSensor:
    def __init__(self, device_id, address, interval):
        self.device_id = device_id
        self.interval = interval
        self.started = time.time()
        self.temperature = random.uniform(18.0, 24.0)
        self.battery = random.uniform(60.0, 100.0)
        self.connection = self._connect(address)
        self._task = None

    def _connect(self, address):
        return MqttConnection(
            address,
            self.device_id,
            subscriptions=[(commands_topic(self.device_id), 1)],
            on_message=self._answer,
            on_connected=self._announce,
            will=(device_topic(self.device_id, STATUS), b"offline"),
        )

    async def run(self):
        """Publishes a reading every `interval` seconds (with a little jitter) while connected."""
        self._task = asyncio.create_task(self.connection.run())
        while True:
            await self.connection.connected.wait()
            self.connection.publish(device_topic(self.device_id, TELEMETRY), orjson.dumps(self.reading()), qos=1)
            await asyncio.sleep(self.interval * random.uniform(0.9, 1.1))

    async def stop(self):
        """Goes offline as a well-behaved device does: says so, then disconnects."""
        self.connection.publish(device_topic(self.device_id, STATUS), b"offline", qos=1, retain=True)
        await self.connection.disconnect()

    def reading(self):
        """A reading stamped with its time, so a copy redelivered by the broker is stored once."""
        now = time.time()
        hours = (now - self.started) / 3600
        self.temperature += random.gauss(0, 0.05) + 0.02 * math.sin(hours * 2 * math.pi)
        self.battery = max(0.0, self.battery - random.uniform(0, 0.01))
        return {"ts": int(now * 1000), "values": {
            "temp": round(self.temperature, 2),
            "humidity": round(45 + 10 * math.sin(hours * math.pi) + random.gauss(0, 0.5), 1),
            "battery": round(self.battery, 2),
            "door_open": random.random() < 0.05,
        }}

    def _announce(self, session_present):
        self.connection.publish(device_topic(self.device_id, STATUS), b"online", qos=1, retain=True)

    def _answer(self, message):
        try:
            command = orjson.loads(message.payload)
            command_id, name, params = command["id"], command["name"], command.get("params") or {}
        except (orjson.JSONDecodeError, KeyError, TypeError):
            logger.warning("%s ignored a malformed command: %r", self.device_id, message.payload[:200])
            return
        if name == "ping":
            self._reply(command_id, True, result={"pong": int(time.time() * 1000)})
        elif name == "set_interval":
            seconds = params.get("seconds")
            if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and MIN_INTERVAL <= seconds <= MAX_INTERVAL:
                self.interval = float(seconds)
                self._reply(command_id, True, result={"interval": self.interval})
            else:
                self._reply(command_id, False, error=f"seconds must be a number from {MIN_INTERVAL} to {MAX_INTERVAL}")
        elif name == "reboot":
            self._reply(command_id, True, result={"rebooting": True})
            asyncio.get_running_loop().create_task(self._reboot())
        else:
            self._reply(command_id, False, error=f"unknown command {name!r}")

    def _reply(self, command_id, ok, result=None, error=None):
        answer = {"id": command_id, "ok": ok, **({"result": result} if ok else {"error": error})}
        self.connection.publish(device_topic(self.device_id, COMMAND_RESULT), orjson.dumps(answer), qos=1)

    async def _reboot(self):
        logger.info("%s rebooting", self.device_id)
        await self.stop()
        await asyncio.sleep(REBOOT_SECONDS)
        self.connection = self._connect(self.connection.address)
        self._task = asyncio.create_task(self.connection.run())


class Fleet:
    """Many simulated sensors on one event loop; `logins` maps each one's id to its MQTT password."""

    def __init__(self, logins, address, interval):
        self.sensors = [
            SimulatedSensor(device_id, address.with_login(device_id, password), interval)
            for device_id, password in logins.items()
        ]
        self._tasks = []

    async def run(self):
        logger.info("simulating %d devices, a reading every %s s each", len(self.sensors), self.sensors[0].interval if self.sensors else "-")
        self._tasks = [asyncio.create_task(sensor.run()) for sensor in self.sensors]
        await asyncio.gather(*self._tasks)

    async def stop(self):
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*(sensor.stop() for sensor in self.sensors), return_exceptions=True)


def simulated_device_ids(count, prefix="sim"):
    return [f"{prefix}-{number:03d}" for number in range(1, count + 1)]


def register_devices(device_ids, owner):
    """Registers, for `owner`, those of the devices that are not registered yet, and gives each
    device a new MQTT password (the simulator is the only one who knows them): {id: password}."""
    from devices.credentials import issue_device_token
    from devices.models import Device

    known = set(Device.objects.filter(pk__in=device_ids).values_list("pk", flat=True))
    Device.objects.bulk_create(
        [Device(id=device_id, name=f"Simulated sensor {device_id}", owner=owner) for device_id in device_ids if device_id not in known]
    )
    return {device.pk: issue_device_token(device) for device in Device.objects.filter(pk__in=device_ids)}
