from django.core.exceptions import ValidationError
from django.core.management import BaseCommand, CommandError

from devices.credentials import ensure_account, new_token
from devices.models import BrokerAccount


class Command(BaseCommand):
    help = ("Makes a broker account for a bridge or a trusted gateway, or gives it a new password; "
            "prints the password once. A running bridge registers its own account, HUB_MQTT_URL's user, a dot and HUB_BRIDGE_ID.")

    def add_arguments(self, parser):
        parser.add_argument("username", help="With at least one dot, e.g. gateway.site-1, so it is never a device id.")
        parser.add_argument("--role", required=True, choices=BrokerAccount.Role.values)

    def handle(self, *args, username, role, **options):
        password = new_token()
        try:
            ensure_account(username, password, role)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages))
        self.stdout.write(f"Broker account {username} ({role}); its password, shown only now:\n  {password}")
