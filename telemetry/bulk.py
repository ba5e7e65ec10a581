"""Inserting many rows in one go, the way each database does it fastest."""
from django.db import connection


# On PostgreSQL the rows go as one array per column, unnested by the server: one statement per
# flush instead of one per row (python -m bench.store_cost: 1,000-1,900 readings/s stored from
# one connection with a statement per row, 2,700-5,600 with arrays). SQLite runs its prepared
# statement per row in-process, faster there than one statement of many VALUES rows.
def insert_rows(sql, rows, postgres_types):
    """Runs an INSERT whose `{rows}` stands for `rows`, tuples of columns whose PostgreSQL types
    are `postgres_types`."""
    if not rows:
        return
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            arrays = ", ".join(f"%s::{kind}[]" for kind in postgres_types)
            cursor.execute(sql.format(rows=f"SELECT * FROM unnest({arrays})"), [list(column) for column in zip(*rows)])
        else:
            cursor.executemany(sql.format(rows=f"VALUES ({', '.join(['%s'] * len(postgres_types))})"), rows)
