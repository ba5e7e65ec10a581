"""Readings keyed by (device, key, ts), no id: on PostgreSQL partitioned by day of ts (with a
DEFAULT partition), on SQLite WITHOUT ROWID. Django cannot express either, so the table is
built here in SQL while the model state changes to a composite primary key.

The old table becomes telemetry_reading_legacy; up to INLINE_ROWS of its rows are moved here
and it is dropped, more are left to `manage.py move_legacy_readings` (telemetry.layout)."""
import time

from django.db import migrations, models
import django.db.models.deletion

from telemetry import layout, partitions

INLINE_ROWS = 200_000
COLUMNS = (
    '"device_id" varchar(64) NOT NULL REFERENCES "devices_device" ("id") DEFERRABLE INITIALLY DEFERRED, '
    '"key" varchar(64) NOT NULL, "ts" bigint NOT NULL, "kind" varchar(1) NOT NULL, "num" {float} NULL, '
    '"text" varchar(256) NULL, CONSTRAINT "telemetry_reading_device_key_ts_pk" PRIMARY KEY ("device_id", "key", "ts")'
)
CREATE = {
    "sqlite": [f'CREATE TABLE "telemetry_reading" ({COLUMNS.format(float="real")}) WITHOUT ROWID'],
    "postgresql": [
        f'CREATE TABLE "telemetry_reading" ({COLUMNS.format(float="double precision")}) PARTITION BY RANGE ("ts")',
        'CREATE TABLE "telemetry_reading_default" PARTITION OF "telemetry_reading" DEFAULT',
    ],
}


def build(apps, schema_editor):
    """Renames the old table, creates the new one and its first partitions, moves a small history."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute('ALTER TABLE "telemetry_reading" RENAME TO "telemetry_reading_legacy"')
        for statement in CREATE[schema_editor.connection.vendor]:
            cursor.execute(statement)
    partitions.ensure_ahead(int(time.time() * 1000))
    if not layout.legacy_holds_more_than(INLINE_ROWS):
        layout.move_all()


def unbuild(apps, schema_editor):
    """The old table again, holding every reading (apps: the state before this migration)."""
    layout.move_all()
    with schema_editor.connection.cursor() as cursor:
        cursor.execute('ALTER TABLE "telemetry_reading" RENAME TO "telemetry_reading_new"')
        schema_editor.create_model(apps.get_model("telemetry", "Reading"))
        cursor.execute(f'INSERT INTO "telemetry_reading" ({layout.COLUMNS}) SELECT {layout.COLUMNS} FROM "telemetry_reading_new"')
        cursor.execute('DROP TABLE "telemetry_reading_new"')


class Migration(migrations.Migration):

    dependencies = [
        ('devices', '0005_device_retention'),
        ('telemetry', '0002_rollups'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(build, unbuild)],
            state_operations=[
                migrations.DeleteModel(name='Reading'),
                migrations.CreateModel(
                    name='Reading',
                    fields=[
                        ('pk', models.CompositePrimaryKey('device', 'key', 'ts', blank=True, editable=False, primary_key=True, serialize=False)),
                        ('key', models.CharField(max_length=64)),
                        ('ts', models.BigIntegerField(help_text='Epoch milliseconds.')),
                        ('kind', models.CharField(choices=[('n', 'Number'), ('b', 'Boolean'), ('s', 'String')], max_length=1)),
                        ('num', models.FloatField(blank=True, null=True)),
                        ('text', models.CharField(blank=True, max_length=256, null=True)),
                        ('device', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='readings', to='devices.device')),
                    ],
                ),
            ],
        ),
    ]
