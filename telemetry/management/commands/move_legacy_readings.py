from django.core.management import BaseCommand

from telemetry import layout


class Command(BaseCommand):
    help = (
        "Moves the readings stored before the keyed layout (telemetry_reading_legacy, left by migration "
        "telemetry 0003 when it held many) into the readings table, newest first, a chunk per "
        "transaction while the hub runs. May be stopped and run again; drops the legacy table when done."
    )

    def add_arguments(self, parser):
        parser.add_argument("--chunk", type=int, default=layout.CHUNK, help="Readings per transaction.")

    def handle(self, *args, chunk, **options):
        if not layout.legacy_exists():
            self.stdout.write("no legacy readings: nothing to move")
            return
        moved = layout.move_all(max(1, chunk), progress=lambda done: self.stdout.write(f"moved {done} readings"))
        self.stdout.write(self.style.SUCCESS(f"done: {moved} readings moved, {layout.LEGACY} dropped"))
