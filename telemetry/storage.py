"""Writing readings: one transaction per flush, a statement per table whatever its size (on
PostgreSQL, two; on SQLite, one more per thousand readings)."""
from django.db import connection, transaction

from devices.models import Device
from telemetry import rollups
from telemetry.bulk import insert_rows, json_array, json_columns, json_rows_sql
from telemetry.models import LatestValue, Reading, value_columns


def store_samples(samples_by_device, received_at):
    """Stores the samples of many devices at once and counts one readings frame for each.

    Returns {device id: the seq of its new frame} for the devices that exist; samples of
    unknown devices are not stored. A reading already stored (same device, key and ts) is
    kept as it was, so storing a batch twice stores it once.
    """
    now_ms = int(received_at.timestamp() * 1000)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            return _store_in_two_statements(samples_by_device, received_at, now_ms)
        seqs = _advance_devices(list(samples_by_device), received_at)
        rows = _rows({device_id: samples_by_device[device_id] for device_id in seqs})
        _insert_readings(rows)
        _upsert_latest(_newest(rows))
        rollups.mark_touched(rows, now_ms)
    return seqs


def _rows(samples_by_device):
    """The readings rows (COLUMNS) of samples, in their order."""
    return [
        (device_id, key, sample.ts, *value_columns(value))
        for device_id, samples in samples_by_device.items()
        for sample in samples
        for key, value in sample.values.items()
    ]


def _newest(rows):
    """Each (device, key)'s newest row of `rows`: of equal times, the first."""
    newest = {}
    for row in rows:
        known = newest.get(row[:2])
        if known is None or known[2] < row[2]:
            newest[row[:2]] = row
    return list(newest.values())


def _store_in_two_statements(samples_by_device, received_at, now_ms):
    """On PostgreSQL a flush is two statements of data-modifying CTEs, the rows going as one JSON
    array per column (telemetry.bulk): the server plans and checks each once (docs/performance.md).

    The first stores the readings, the bulk of the work, holding the devices' rows only FOR KEY
    SHARE, which bridges flushing at once all take and a deletion waits for. The second counts the
    frames and writes the latest values and rollup marks: rows every bridge's flush shares, so
    they are locked only for that short statement and the commit, not for the whole flush, which
    made bridges on `$share` wait for each other's flushes in turn."""
    rows = _rows(samples_by_device)
    devices = json_array(samples_by_device)
    marks = rollups.marks_to_write(rows, now_ms)
    with connection.cursor() as cursor:
        cursor.execute(_readings_statement(), [devices, *json_columns(rows, len(COLUMNS))])
        cursor.execute(_frames_statement(), [
            connection.ops.adapt_datetimefield_value(received_at), devices,
            *json_columns(_newest(rows), len(COLUMNS)), *json_columns(marks, len(rollups.MARK_COLUMNS)),
        ])
        seqs = dict(cursor.fetchall())
    rollups.remember_marks([mark for mark in marks if mark[0] in seqs])
    return seqs


def _device_sql():
    quote = connection.ops.quote_name
    return quote(Device._meta.db_table), *(quote(Device._meta.get_field(name).column) for name in ("id", "seq", "last_seen"))


def _readings_statement():
    table, pk, _, _ = _device_sql()
    names = [connection.ops.quote_name(name) for name in COLUMNS]
    device, key, ts = names[:3]
    # The first of readings with the same (device, key, ts) in a flush is kept, as a second
    # flush would keep the first: by their arrival, not the order a join happens to give.
    readings = _insert_readings_sql().format(
        rows=f"SELECT DISTINCT ON ({device}, {key}, {ts}) {', '.join(names)} FROM batch ORDER BY {device}, {key}, {ts}, arrival"
    )
    return (
        f"WITH known AS (SELECT {pk} AS device_id FROM {table} WHERE {pk} IN (SELECT json_array_elements_text(%s::json)) "
        f"FOR KEY SHARE), "
        f"batch AS (SELECT flushed.* FROM ({json_rows_sql(names, POSTGRES_TYPES, ordinality='arrival')}) AS flushed "
        f"JOIN known USING (device_id)) "
        f"{readings}"
    )


def _frames_statement():
    table, pk, seq, last_seen = _device_sql()
    names = [connection.ops.quote_name(name) for name in COLUMNS]
    latest = _upsert_latest_sql().format(
        rows=f"SELECT newest.* FROM ({json_rows_sql(names, POSTGRES_TYPES)}) AS newest JOIN counted USING (device_id)"
    )
    marks = rollups.mark_sql().format(
        rows=f"SELECT touched.*, 1 FROM ({json_rows_sql(rollups.MARK_COLUMNS, rollups.MARK_TYPES)}) AS touched JOIN counted USING (device_id)"
    )
    return (
        f"WITH counted AS (UPDATE {table} SET {seq} = {seq} + 1, {last_seen} = %s WHERE {pk} IN (SELECT json_array_elements_text(%s::json)) "
        f"RETURNING {pk} AS device_id, {seq} AS seq), "
        f"latest AS ({latest}), marked AS ({marks}) "
        f"SELECT device_id, seq FROM counted"
    )


# Plain SQL rather than bulk_create: building a model instance per value cost the bridge
# more than the database did (bench/, docs/performance.md).
COLUMNS = ("device_id", "key", "ts", "kind", "num", "text")
# Their types on PostgreSQL, for telemetry.bulk.
POSTGRES_TYPES = ("text", "text", "bigint", "text", "double precision", "text")


def _advance_devices(ids, received_at):
    """Counts a readings frame for each device that exists, in one statement (building the
    ORM's update and select cost about half of a small flush): {device id: its new seq}."""
    if not ids:
        return {}
    table, pk, seq, last_seen = _device_sql()
    sql = (
        f"UPDATE {table} SET {seq} = {seq} + 1, {last_seen} = %s "
        f"WHERE {pk} IN ({', '.join(['%s'] * len(ids))}) RETURNING {pk}, {seq}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [connection.ops.adapt_datetimefield_value(received_at), *ids])
        return dict(cursor.fetchall())


def _insert_readings(rows):
    insert_rows(_insert_readings_sql(), rows, POSTGRES_TYPES)


def _insert_readings_sql():
    """Inserts readings, skipping those stored already (same device, key and ts)."""
    table, columns = _insert_parts(Reading)
    return f"INSERT INTO {table} ({columns}) {{rows}} ON CONFLICT DO NOTHING"


def _upsert_latest(rows):
    insert_rows(_upsert_latest_sql(), list(rows), POSTGRES_TYPES)


def _upsert_latest_sql():
    """Sets each (device, key)'s latest value unless a newer one is stored already."""
    table, columns = _insert_parts(LatestValue)
    device, key, ts, kind, num, text = (connection.ops.quote_name(name) for name in COLUMNS)
    return (
        f"INSERT INTO {table} ({columns}) {{rows}} "
        f"ON CONFLICT ({device}, {key}) DO UPDATE SET {ts} = excluded.{ts}, {kind} = excluded.{kind}, "
        f"{num} = excluded.{num}, {text} = excluded.{text} WHERE excluded.{ts} > {table}.{ts}"
    )


def _insert_parts(model):
    quote = connection.ops.quote_name
    return quote(model._meta.db_table), ", ".join(map(quote, COLUMNS))
