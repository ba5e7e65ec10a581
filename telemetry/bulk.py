"""Inserting many rows in one go, the way each database does it fastest."""
import sqlite3
from itertools import chain

from django.db import connection

# SQLite rows per statement: 6,000 parameters for readings, well under SQLite's limit of 32,766.
SQLITE_ROWS_PER_STATEMENT = 1000


# On PostgreSQL the rows go as one array per column, unnested by the server: one statement per
# flush instead of one per row (python -m bench.store_cost: 1,000-1,900 readings/s stored from
# one connection with a statement per row, 2,700-5,600 with arrays). On SQLite they go as
# statements of many VALUES rows: executemany() lets go of the GIL around each row, and in the
# bridge the event loop, busy receiving, takes it each time, so that a row cost 13 us instead of
# 7; one statement of 1,000 rows lets go of it once, and a row costs 8.7 us whether the loop is
# busy or not (docs/performance.md, "Storing while receiving").
def insert_rows(sql, rows, postgres_types):
    """Runs an INSERT whose `{rows}` stands for `rows`, tuples of columns whose PostgreSQL types
    are `postgres_types`."""
    if not rows:
        return
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            arrays = ", ".join(f"%s::{kind}[]" for kind in postgres_types)
            cursor.execute(sql.format(rows=f"SELECT * FROM unnest({arrays})"), [list(column) for column in zip(*rows)])
            return
        row = f"({', '.join(['?'] * len(postgres_types))})"
        for start in range(0, len(rows), SQLITE_ROWS_PER_STATEMENT):
            chunk = rows[start:start + SQLITE_ROWS_PER_STATEMENT]
            # With SQLite's own placeholders, past Django's cursor: it would rewrite each of
            # the statement's thousands of %s with a regular expression, a tenth of a flush.
            with connection.wrap_database_errors:
                sqlite3.Cursor.execute(cursor.cursor, sql.format(rows=f"VALUES {', '.join([row] * len(chunk))}"),
                                       list(chain.from_iterable(chunk)))
