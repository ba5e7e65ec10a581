import asyncio
import logging
import signal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import BaseCommand, CommandError

from bridge.mqtt import parse_mqtt_url
from devices.simulator import Fleet, register_devices, simulated_device_ids

logger = logging.getLogger("simulator")


class Command(BaseCommand):
    help = "Runs simulated sensors that publish readings over MQTT (HUB_MQTT_URL) and answer commands."

    def add_arguments(self, parser):
        parser.add_argument("--devices", type=int, default=10, help="How many sensors (default 10).")
        parser.add_argument("--interval", type=float, default=1.0, help="Seconds between readings (default 1).")
        parser.add_argument("--prefix", default="sim", help="Device ids are PREFIX-001, PREFIX-002, ...")
        parser.add_argument("--owner", default="demo", help="Who owns the devices it registers (default demo).")

    def handle(self, *args, devices, interval, prefix, owner, **options):
        if devices < 1 or interval <= 0:
            raise CommandError("--devices must be at least 1 and --interval above 0.")
        owner_user, created = get_user_model().objects.get_or_create(username=owner)
        if created:
            owner_user.set_unusable_password()
            owner_user.save()
            logger.info("created user %s to own the simulated devices (manage.py changepassword %s)", owner, owner)
        device_ids = simulated_device_ids(devices, prefix)
        logins = register_devices(device_ids, owner_user)
        address = parse_mqtt_url(settings.MQTT_URL).without_login()
        logger.info("simulated devices %s..%s publish to %s, each with a new password", device_ids[0], device_ids[-1], address)
        asyncio.run(self.simulate(logins, address, interval))

    async def simulate(self, logins, address, interval):
        fleet = Fleet(logins, address, interval)
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(signum, stop.set)
        running = asyncio.create_task(fleet.run())
        await stop.wait()
        logger.info("stopping: devices go offline")
        await fleet.stop()
        running.cancel()
