from django.core.management import BaseCommand

from telemetry.models import Reading
from telemetry.rollups import mark_all_readings


class Command(BaseCommand):
    help = (
        "Marks the minutes of every stored reading for the rollup job, which the running bridge then "
        "computes: run once after upgrading to rollups. Goes in chunks while the hub runs, and may be "
        "stopped and run again from where it stopped (--after the last reading it printed)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--chunk", type=int, default=20000, help="Readings per transaction.")
        parser.add_argument("--after", nargs=3, metavar=("DEVICE", "KEY", "TS"),
                            help="Start after this reading (readings go in device, key, ts order).")

    def handle(self, *args, chunk, after, **options):
        readings = Reading.objects.all()
        if after is not None:
            after = (after[0], after[1], int(after[2]))
            readings = readings.filter(pk__gt=after)
        total = readings.count()
        done = 0
        while True:
            after, count = mark_all_readings(after, max(1, chunk))
            if after is None:
                break
            done += count
            self.stdout.write(f"marked up to reading {' '.join(map(str, after))}: {done} of {total} readings")
        self.stdout.write(self.style.SUCCESS(f"done: {done} readings marked; the bridge's rollup job computes their minutes"))
