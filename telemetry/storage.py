"""Writing readings: one transaction per flush, a fixed number of statements whatever its size."""
from django.db import connection, transaction

from devices.models import Device
from telemetry import rollups
from telemetry.bulk import insert_rows
from telemetry.models import LatestValue, Reading, value_columns


def store_samples(samples_by_device, received_at):
    """Stores the samples of many devices at once and counts one readings frame for each.

    Returns {device id: the seq of its new frame} for the devices that exist; samples of
    unknown devices are not stored. A reading already stored (same device, key and ts) is
    kept as it was, so storing a batch twice stores it once.
    """
    with transaction.atomic():
        seqs = _advance_devices(list(samples_by_device), received_at)
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
        rollups.mark_touched(rows, int(received_at.timestamp() * 1000))
    return seqs


# Plain SQL rather than bulk_create: building a model instance per value cost the bridge
# more than the database did (bench/, docs/performance.md).
COLUMNS = ("device_id", "key", "ts", "kind", "num", "text")
# Their types on PostgreSQL, for telemetry.bulk.insert_rows.
POSTGRES_TYPES = ("text", "text", "bigint", "text", "double precision", "text")


def _advance_devices(ids, received_at):
    """Counts a readings frame for each device that exists, in one statement (building the
    ORM's update and select cost about half of a small flush): {device id: its new seq}."""
    if not ids:
        return {}
    quote = connection.ops.quote_name
    table = quote(Device._meta.db_table)
    pk, seq, last_seen = (quote(Device._meta.get_field(name).column) for name in ("id", "seq", "last_seen"))
    sql = (
        f"UPDATE {table} SET {seq} = {seq} + 1, {last_seen} = %s "
        f"WHERE {pk} IN ({', '.join(['%s'] * len(ids))}) RETURNING {pk}, {seq}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [connection.ops.adapt_datetimefield_value(received_at), *ids])
        return dict(cursor.fetchall())


def _insert_readings(rows):
    """Inserts readings, skipping those stored already (same device, key and ts)."""
    table, columns = _insert_parts(Reading)
    insert_rows(f"INSERT INTO {table} ({columns}) {{rows}} ON CONFLICT DO NOTHING", rows, POSTGRES_TYPES)


def _upsert_latest(rows):
    """Sets each (device, key)'s latest value unless a newer one is stored already."""
    table, columns = _insert_parts(LatestValue)
    device, key, ts, kind, num, text = (connection.ops.quote_name(name) for name in COLUMNS)
    sql = (
        f"INSERT INTO {table} ({columns}) {{rows}} "
        f"ON CONFLICT ({device}, {key}) DO UPDATE SET {ts} = excluded.{ts}, {kind} = excluded.{kind}, "
        f"{num} = excluded.{num}, {text} = excluded.{text} WHERE excluded.{ts} > {table}.{ts}"
    )
    insert_rows(sql, list(rows), POSTGRES_TYPES)


def _insert_parts(model):
    quote = connection.ops.quote_name
    return quote(model._meta.db_table), ", ".join(map(quote, COLUMNS))
