from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management import BaseCommand, CommandError

from bridge.mqtt import parse_mqtt_url
from bridge.protocol import COMMAND_RESULT, STATUS, TELEMETRY, commands_topic, device_topic
from devices.credentials import issue_device_token
from devices.models import Device


def device_broker():
    """Where devices connect: HUB_MQTT_PUBLIC_URL, else the broker of HUB_MQTT_URL (the bridge's)."""
    if settings.MQTT_PUBLIC_URL:
        return settings.MQTT_PUBLIC_URL
    address = parse_mqtt_url(settings.MQTT_URL).without_login()
    return f"{address}  (the bridge's broker; set HUB_MQTT_PUBLIC_URL to the address devices use)"


class Command(BaseCommand):
    help = "Registers a device and prints how it connects to the broker."

    def add_arguments(self, parser):
        parser.add_argument("device_id", help="Letters, digits, _ and -, at most 64: also its MQTT username.")
        parser.add_argument("--owner", required=True, help="Username of the operator who owns it.")
        parser.add_argument("--name", default="", help="A name for people.")

    def handle(self, *args, device_id, owner, name, **options):
        broker = device_broker()
        try:
            owner_user = get_user_model().objects.get(username=owner)
        except get_user_model().DoesNotExist:
            raise CommandError(f"No user {owner!r}: create one first (manage.py createsuperuser).")
        if Device.objects.filter(pk=device_id).exists():
            raise CommandError(f"Device {device_id!r} is registered already.")
        device = Device(id=device_id, name=name, owner=owner_user)
        try:
            device.full_clean()
        except ValidationError as exc:
            raise CommandError("; ".join(f"{field}: {' '.join(errors)}" for field, errors in exc.message_dict.items()))
        device.save()
        password = issue_device_token(device)
        self.stdout.write(self.style.SUCCESS(f"Registered {device_id} for {owner}."))
        self.stdout.write(f"  broker:    {broker}")
        self.stdout.write(f"  username:  {device_id}  (also its client id)")
        self.stdout.write(f"  password:  {password}  (shown only now: manage.py devicetoken rotate {device_id} makes a new one)")
        self.stdout.write(f"  publish:   {device_topic(device_id, TELEMETRY)}, {device_topic(device_id, STATUS)}, "
                          f"{device_topic(device_id, COMMAND_RESULT)}")
        self.stdout.write(f"  subscribe: {commands_topic(device_id)}")
