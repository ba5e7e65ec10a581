import logging

from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import get_channel_layer
from channels.routing import get_default_application
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management import BaseCommand, CommandError

from bridge import metrics, processes
from bridge.bridge import Bridge
from bridge.worker import BridgeWorker
from telemetry.events import BRIDGE_COMMANDS_CHANNEL

logger = logging.getLogger("bridge")


class Command(BaseCommand):
    help = "Runs the MQTT bridge: a channels worker that owns the MQTT connection (HUB_MQTT_URL)."
    leave_locale_alone = True
    worker_class = BridgeWorker

    def add_arguments(self, parser):
        parser.add_argument("--layer", default=DEFAULT_CHANNEL_LAYER, help="Channel layer alias to use.")
        parser.add_argument(
            "--processes", type=int, default=1,
            help="Bridge processes to run, each a bridge of its own in the shared group (bridge.processes); "
                 "as many as there are cores to use them all.",
        )

    def handle(self, *args, **options):
        if options["processes"] > 1:
            if not settings.MQTT_SHARED_GROUP:
                raise CommandError("--processes needs HUB_MQTT_SHARED_GROUP: the processes share the broker's load through it.")
            processes.run(options["processes"], stale_seconds=settings.BRIDGE_STALL_SECONDS)
            return
        if options["processes"] < 1:
            raise CommandError("--processes takes 1 or more.")
        channel_layer = get_channel_layer(options["layer"])
        if channel_layer is None:
            raise CommandError("No channel layer is configured.")
        try:
            bridge = Bridge.from_settings(channel_layer)
        except ValueError as exc:
            raise CommandError(f"HUB_MQTT_URL: {exc}")
        if bridge.broker_auth:
            if bridge.address.username is None:
                raise CommandError("HUB_BROKER_AUTH_DIR is set, so HUB_MQTT_URL must name the bridge's broker user.")
            try:
                bridge.broker_auth.sync()
            except ValidationError as exc:
                raise CommandError(
                    f"this bridge's broker account {bridge.address.username!r} (HUB_MQTT_URL's user, a dot and "
                    f"HUB_BRIDGE_ID) cannot be a broker account: {' '.join(exc.messages)}"
                )
        metrics.serve(bridge)
        logger.info("listening for commands on channel %s", BRIDGE_COMMANDS_CHANNEL)
        worker = self.worker_class(
            bridge=bridge,
            application=get_default_application(),
            channels=[BRIDGE_COMMANDS_CHANNEL],
            channel_layer=channel_layer,
        )
        worker.run()
        if worker.failed:
            # Non-zero, so that compose or systemd starts it again.
            raise CommandError("the bridge failed (see the log above)")
