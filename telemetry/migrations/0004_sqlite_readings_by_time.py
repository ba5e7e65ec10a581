"""On SQLite, the readings table clustered by (device_id, ts, key) instead of (device_id, key, ts).

A flush writes the newest page of every series it touches, and SQLite writes each page to the
WAL in a call of its own: one device's values of an instant now share a page instead of one page
per key, so a flush of 1,000 devices reporting 5 keys writes about 1,000 pages, not 5,000
(docs/storage.md). Rows keep their identity, so the model does not change. PostgreSQL is left
as it is: a flush dirties its buffers there, and writes no page of its own.

The table is rebuilt device by device in this migration's transaction, with a line of progress
every few seconds."""
import time

from django.db import migrations

TABLE = "telemetry_reading"
COLUMNS = '"device_id", "key", "ts", "kind", "num", "text"'
CREATE = (
    'CREATE TABLE "{table}" ("device_id" varchar(64) NOT NULL REFERENCES "devices_device" ("id") DEFERRABLE '
    'INITIALLY DEFERRED, "key" varchar(64) NOT NULL, "ts" bigint NOT NULL, "kind" varchar(1) NOT NULL, '
    '"num" real NULL, "text" varchar(256) NULL, CONSTRAINT "telemetry_reading_{name}_pk" PRIMARY KEY ({order})) '
    "WITHOUT ROWID"
)
BY_TIME = ("device_ts_key", '"device_id", "ts", "key"')
BY_KEY = ("device_key_ts", '"device_id", "key", "ts"')
PROGRESS_SECONDS = 5


def rebuild(apps, schema_editor, primary_key):
    """Copies the readings into a table of the `primary_key` (name, columns) and swaps it in."""
    if schema_editor.connection.vendor != "sqlite":
        return
    name, order = primary_key
    devices = list(apps.get_model("devices", "Device").objects.order_by("pk").values_list("pk", flat=True))
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(CREATE.format(table=f"{TABLE}_new", name=name, order=order))
        reported = time.monotonic()
        for done, device_id in enumerate(devices, start=1):
            cursor.execute(
                f'INSERT INTO "{TABLE}_new" ({COLUMNS}) SELECT {COLUMNS} FROM "{TABLE}" WHERE "device_id" = %s',
                [device_id],
            )
            if time.monotonic() - reported >= PROGRESS_SECONDS:
                print(f"  readings of {done:,} of {len(devices):,} devices copied", flush=True)
                reported = time.monotonic()
        cursor.execute(f'DROP TABLE "{TABLE}"')
        cursor.execute(f'ALTER TABLE "{TABLE}_new" RENAME TO "{TABLE}"')


class Migration(migrations.Migration):

    dependencies = [
        ('telemetry', '0003_reading_layout'),
    ]

    operations = [
        migrations.RunPython(
            lambda apps, schema_editor: rebuild(apps, schema_editor, BY_TIME),
            lambda apps, schema_editor: rebuild(apps, schema_editor, BY_KEY),
        ),
    ]
