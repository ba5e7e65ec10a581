"""Writing readings: one transaction per flush, a fixed number of statements whatever its size."""
from django.db import connection, transaction
from django.db.models import F

from devices.models import Device
from telemetry.models import LatestValue, Reading, value_columns


def store_samples(samples_by_device, received_at):
    """Stores the samples of many devices at once and counts one readings frame for each.

    Returns {device id: the seq of its new frame} for the devices that exist; samples of
    unknown devices are not stored. A reading already stored (same device, key and ts) is
    kept as it was, so storing a batch twice stores it once.
    """
    ids = list(samples_by_device)
    with transaction.atomic():
        Device.objects.filter(pk__in=ids).update(seq=F("seq") + 1, last_seen=received_at)
        seqs = dict(Device.objects.filter(pk__in=ids).values_list("pk", "seq"))
        rows = []
        newest = {}
        for device_id in seqs:
            for sample in samples_by_device[device_id]:
                for key, value in sample.values.items():
                    row = (device_id, key, sample.ts, *value_columns(value))
                    rows.append(row)
                    known = newest.get((device_id, key))
                    if known is None or known[2] < sample.ts:
                        newest[(device_id, key)] = row
        _insert_readings(rows)
        _upsert_latest(newest.values())
    return seqs


# Plain SQL rather than bulk_create: building a model instance per value cost the bridge
# more than the database did (bench/, docs/performance.md).
COLUMNS = ("device_id", "key", "ts", "kind", "num", "text")


def _insert_readings(rows):
    """Inserts readings, skipping those stored already (same device, key and ts)."""
    table, columns, placeholders = _insert_parts(Reading)
    sql = f"INSERT INTO {table} ({columns}) VALUES ({placeholders}) ON CONFLICT DO NOTHING"
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def _upsert_latest(rows):
    """Sets each (device, key)'s latest value unless a newer one is stored already."""
    if not rows:
        return
    table, columns, placeholders = _insert_parts(LatestValue)
    device, key, ts, kind, num, text = (connection.ops.quote_name(name) for name in COLUMNS)
    sql = (
        f"INSERT INTO {table} ({columns}) VALUES ({placeholders}) "
        f"ON CONFLICT ({device}, {key}) DO UPDATE SET {ts} = excluded.{ts}, {kind} = excluded.{kind}, "
        f"{num} = excluded.{num}, {text} = excluded.{text} WHERE excluded.{ts} > {table}.{ts}"
    )
    with connection.cursor() as cursor:
        cursor.executemany(sql, list(rows))


def _insert_parts(model):
    quote = connection.ops.quote_name
    return quote(model._meta.db_table), ", ".join(map(quote, COLUMNS)), ", ".join(["%s"] * len(COLUMNS))
