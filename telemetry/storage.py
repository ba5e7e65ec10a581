"""Writing readings: one transaction per flush, a fixed number of statements whatever its size."""
from django.db import connection, transaction
from django.db.models import F

from devices.models import Device
from telemetry.models import LatestValue, Reading, value_columns

INSERT_BATCH = 2000


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
        readings = []
        newest = {}
        for device_id in seqs:
            for sample in samples_by_device[device_id]:
                for key, value in sample.values.items():
                    kind, num, text = value_columns(value)
                    readings.append(Reading(device_id=device_id, key=key, ts=sample.ts, kind=kind, num=num, text=text))
                    known = newest.get((device_id, key))
                    if known is None or known[2] <= sample.ts:
                        newest[(device_id, key)] = (device_id, key, sample.ts, kind, num, text)
        Reading.objects.bulk_create(readings, ignore_conflicts=True, batch_size=INSERT_BATCH)
        _upsert_latest(newest.values())
    return seqs


def _upsert_latest(rows):
    """Sets each (device, key)'s latest value unless a newer one is stored already."""
    if not rows:
        return
    quote = connection.ops.quote_name
    table = quote(LatestValue._meta.db_table)
    device, key, ts, kind, num, text = (quote(name) for name in ("device_id", "key", "ts", "kind", "num", "text"))
    sql = (
        f"INSERT INTO {table} ({device}, {key}, {ts}, {kind}, {num}, {text}) VALUES (%s, %s, %s, %s, %s, %s) "
        f"ON CONFLICT ({device}, {key}) DO UPDATE SET {ts} = excluded.{ts}, {kind} = excluded.{kind}, "
        f"{num} = excluded.{num}, {text} = excluded.{text} WHERE excluded.{ts} >= {table}.{ts}"
    )
    with connection.cursor() as cursor:
        cursor.executemany(sql, list(rows))
