"""The whole hub in one process, for trying Telehub on one machine.

daphne serves the web and websockets; in its event loop run the bridge (a channels worker),
an embedded MQTT broker (amqtt, loopback only) unless HUB_MQTT_URL names one, and a few
simulated sensors. Without HUB_REDIS_URL the channel layer is in-process. manage.py runs it in
debug mode unless HUB_DEBUG says otherwise. Production runs these as separate processes
(docker-compose.yml).
"""
import asyncio
import logging
import secrets
import signal
import socket

import daphne.server  # noqa: F401  (installs the asyncio reactor before twisted is imported)
from channels.layers import get_channel_layer
from channels.routing import get_default_application
from daphne.server import Server
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import BaseCommand, CommandError, call_command
from twisted.internet import defer, reactor

from bridge import metrics as bridge_metrics
from bridge.bridge import Bridge
from bridge.mqtt import parse_mqtt_url
from bridge.worker import BridgeWorker
from devices.simulator import Fleet, register_devices, simulated_device_ids
from telemetry.events import BRIDGE_COMMANDS_CHANNEL

logger = logging.getLogger("hub")

DEMO_USER = "demo"


class Command(BaseCommand):
    help = "Runs the whole hub in one process with embedded defaults: web, bridge, MQTT broker, simulated devices."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="Interface for the web server (default 127.0.0.1).")
        parser.add_argument("--port", type=int, default=8000, help="Web port (default 8000).")
        parser.add_argument("--mqtt-port", type=int, default=1883, help="Port of the embedded MQTT broker (default 1883).")
        parser.add_argument("--devices", type=int, default=5, help="Simulated devices (default 5; 0 for none).")
        parser.add_argument("--interval", type=float, default=1.0, help="Seconds between their readings (default 1).")

    def handle(self, *args, host, port, mqtt_port, devices, interval, **options):
        embedded_broker = not settings.MQTT_URL
        _check_port_free(host, port, "--port")
        if embedded_broker:
            _check_port_free("127.0.0.1", mqtt_port, "--mqtt-port")
        address = parse_mqtt_url(settings.MQTT_URL or f"mqtt://127.0.0.1:{mqtt_port}")

        logger.info("applying migrations")
        call_command("migrate", interactive=False, verbosity=0)
        operator, password = _demo_operator()
        device_ids = simulated_device_ids(devices, prefix="demo")
        logins = register_devices(device_ids, operator)

        self.runtime = Runtime(address, embedded_broker, logins, interval)
        reactor.callWhenRunning(lambda: asyncio.ensure_future(self.runtime.start()))
        reactor.addSystemEventTrigger("before", "shutdown", lambda: defer.Deferred.fromFuture(
            asyncio.ensure_future(self.runtime.stop())
        ))
        url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/"
        self.stdout.write(self.style.SUCCESS(f"\nTelehub is starting at {url}"))
        self.stdout.write(f"  sign in as {DEMO_USER} / {password}")
        self.stdout.write(f"  MQTT broker: {address}{' (embedded, loopback only)' if embedded_broker else ''}")
        self.stdout.write(f"  channel layer: {settings.CHANNEL_LAYERS['default']['BACKEND']}")
        self.stdout.write(f"  simulated devices: {', '.join(device_ids) or 'none'}")
        if settings.DEBUG:
            self.stdout.write("  debug mode (HUB_DEBUG): error pages show the code and settings; for development only")
        self.stdout.write("  Ctrl-C stops it.\n")
        # Even where it was started with SIGINT ignored (a script's background job inherits
        # that): Twisted takes SIGINT over only from Python's own handler.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        Server(
            application=get_default_application(),
            endpoints=[f"tcp:port={port}:interface={host}"],
        ).run()


class Runtime:
    """What runs beside daphne in its event loop."""

    def __init__(self, address, embedded_broker, logins, interval):
        self.address = address
        self.embedded_broker = embedded_broker
        self.logins = logins
        self.interval = interval
        self.broker = None
        self.fleet = None
        self.stopping = asyncio.Event()
        self.tasks = []

    async def start(self):
        if self.embedded_broker:
            from amqtt.broker import Broker

            self.broker = Broker({
                "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.address.port}"}},
                "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
            })
            await self.broker.start()
            logger.info(
                "embedded MQTT broker (amqtt) listening on 127.0.0.1:%d, loopback only: it lets any local "
                "client in without a password, so it is for development; production uses Mosquitto with "
                "device logins (README.md)", self.address.port,
            )
        layer = get_channel_layer()
        # amqtt has no shared subscriptions, and no other bridge reaches an embedded broker.
        bridge = Bridge.from_settings(layer, self.address, shared_group="" if self.embedded_broker else None)
        bridge_metrics.serve(bridge)
        worker = BridgeWorker(
            bridge=bridge,
            application=get_default_application(),
            channels=[BRIDGE_COMMANDS_CHANNEL],
            channel_layer=layer,
        )
        self.tasks = [asyncio.create_task(worker.serve(self.stopping)), asyncio.create_task(worker.application_checker())]
        if self.logins:
            self.fleet = Fleet(self.logins, self.address.without_login(), self.interval)
            self.tasks.append(asyncio.create_task(self.fleet.run()))
        logger.info("hub ready")

    async def stop(self):
        logger.info("stopping")
        if self.fleet is not None:
            await self.fleet.stop()
        self.stopping.set()
        if self.tasks:
            await self.tasks[0]
            for task in self.tasks[1:]:
                task.cancel()
        if self.broker is not None:
            await self.broker.shutdown()


def _demo_operator():
    """The demo operator and its password, made on first run and kept in HUB_DATA_DIR."""
    password_file = settings.DATA_DIR / "demo-password"
    user, created = get_user_model().objects.get_or_create(username=DEMO_USER)
    if created or not password_file.exists():
        password = secrets.token_urlsafe(9)
        user.set_password(password)
        user.save()
        password_file.touch(mode=0o600)
        password_file.write_text(password)
    return user, password_file.read_text().strip()


def _check_port_free(host, port, option):
    with socket.socket() as probe:
        # As the servers themselves do, so that a port left in TIME_WAIT counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise CommandError(f"Cannot listen on {host}:{port} ({exc.strerror}): choose another with {option}.")
