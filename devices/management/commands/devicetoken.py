from django.core.management import BaseCommand, CommandError

from devices.credentials import issue_device_token, revoke_device_token
from devices.models import Device


class Command(BaseCommand):
    help = "Gives a device a new MQTT password (rotate) or takes its password away (revoke)."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["rotate", "revoke"])
        parser.add_argument("device_id")

    def handle(self, *args, action, device_id, **options):
        device = Device.objects.filter(pk=device_id).first()
        if device is None:
            raise CommandError(f"No device {device_id!r}.")
        if action == "revoke":
            revoke_device_token(device)
            self.stdout.write(f"Revoked {device_id}'s MQTT password: the broker drops it within seconds.")
            return
        password = issue_device_token(device)
        self.stdout.write(f"New MQTT password for {device_id} (shown only now; the old one stops working):")
        self.stdout.write(f"  username: {device_id}\n  password: {password}")
