"""Readings and latest values without a foreign-key constraint on their device, on PostgreSQL:
it was checked once per stored value at commit, about a fifth of a flush's time. Deleting a
device locks it instead (telemetry.deletion). On SQLite the tables keep theirs: dropping it
would mean copying the readings table, and SQLite's one writer makes the lock unneeded."""
from django.db import migrations, models
import django.db.models.deletion

TABLES = ("telemetry_reading", "telemetry_latestvalue")


def on_each_table(change):
    """A migration step applying change(cursor, table) to each table, on PostgreSQL only."""
    def step(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        with schema_editor.connection.cursor() as cursor:
            for table in TABLES:
                change(cursor, table)
    return step


def drop_constraint(cursor, table):
    cursor.execute(
        "SELECT conname FROM pg_constraint WHERE contype = 'f' AND conrelid = %s::regclass "
        "AND confrelid = 'devices_device'::regclass",
        [table],
    )
    for (name,) in cursor.fetchall():
        cursor.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"')


def add_constraint(cursor, table):
    cursor.execute(
        f'ALTER TABLE "{table}" ADD CONSTRAINT "{table}_device_id_fkey" FOREIGN KEY ("device_id") '
        'REFERENCES "devices_device" ("id") DEFERRABLE INITIALLY DEFERRED'
    )


class Migration(migrations.Migration):

    dependencies = [
        ('devices', '0005_device_retention'),
        ('telemetry', '0004_sqlite_readings_by_time'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(on_each_table(drop_constraint), on_each_table(add_constraint))],
            state_operations=[
                migrations.AlterField(
                    model_name='latestvalue',
                    name='device',
                    field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='latest_values', to='devices.device'),
                ),
                migrations.AlterField(
                    model_name='reading',
                    name='device',
                    field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='readings', to='devices.device'),
                ),
            ],
        ),
    ]
