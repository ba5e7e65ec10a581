"""Inserting many rows in one go, the way each database does it fastest."""
import sqlite3
from itertools import chain

import orjson
from django.db import connection

# SQLite rows per statement: 6,000 parameters for readings, well under SQLite's limit of 32,766.
SQLITE_ROWS_PER_STATEMENT = 1000


# On PostgreSQL the rows go as one JSON array per column, which the server takes apart: one
# statement per flush instead of one per row (python -m bench.store_cost: 1,000-1,900 readings/s
# stored from one connection with a statement per row, 2,700-5,600 with arrays). JSON, not
# PostgreSQL arrays: psycopg quotes an array element by element in Python, which took a fifth
# of the bridge's database thread at 5,700 readings/s, where orjson writes a column in one call
# (docs/performance.md, "Columns as JSON"). On SQLite they go as statements of many VALUES
# rows: executemany() lets go of the GIL around each row, and in the bridge the event loop,
# busy receiving, takes it each time, so that a row cost 13 us instead of 7; one statement of
# 1,000 rows lets go of it once, and a row costs 8.7 us whether the loop is busy or not
# (docs/performance.md, "Storing while receiving").
def insert_rows(sql, rows, postgres_types):
    """Runs an INSERT whose `{rows}` stands for `rows`, tuples of columns whose PostgreSQL types
    are `postgres_types`."""
    if not rows:
        return
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            select, params = rows_sql(rows, postgres_types)
            cursor.execute(sql.format(rows=select), params)
            return
        row = f"({', '.join(['?'] * len(postgres_types))})"
        for start in range(0, len(rows), SQLITE_ROWS_PER_STATEMENT):
            chunk = rows[start:start + SQLITE_ROWS_PER_STATEMENT]
            # With SQLite's own placeholders, past Django's cursor: it would rewrite each of
            # the statement's thousands of %s with a regular expression, a tenth of a flush.
            with connection.wrap_database_errors:
                sqlite3.Cursor.execute(cursor.cursor, sql.format(rows=f"VALUES {', '.join([row] * len(chunk))}"),
                                       list(chain.from_iterable(chunk)))


def rows_sql(rows, postgres_types):
    """A SELECT of the tuples `rows`, whose columns are of `postgres_types`, and its parameters:
    on PostgreSQL from JSON columns, on SQLite from VALUES (a few thousand parameters at most:
    SQLite takes 32,766)."""
    if connection.vendor == "postgresql":
        names = [f"c{number}" for number in range(len(postgres_types))]
        return json_rows_sql(names, postgres_types), json_columns(rows, len(names))
    row = f"({', '.join(['%s'] * len(postgres_types))})"
    return f"VALUES {', '.join([row] * len(rows))}", list(chain.from_iterable(rows))


def json_rows_sql(names, postgres_types, ordinality=None):
    """PostgreSQL's SELECT of rows sent as json_columns(): one placeholder per column, each
    column named and of its type; with `ordinality`, a last column of that name numbers the
    rows from 1."""
    columns = ", ".join("json_array_elements_text(%s::json)" for _ in names)
    typed = [f"{name}::{kind} AS {name}" for name, kind in zip(names, postgres_types)]
    aliases = list(names)
    if ordinality:
        typed.append(ordinality)
        aliases.append(ordinality)
    numbered = " WITH ORDINALITY" if ordinality else ""
    return f"SELECT {', '.join(typed)} FROM ROWS FROM ({columns}){numbered} AS rows({', '.join(aliases)})"


def json_columns(rows, width):
    """The parameters of json_rows_sql(): each of the `width` columns of `rows` as a JSON array."""
    return [json_array(column) for column in zip(*rows)] or ["[]"] * width


def json_array(values):
    """`values` as a JSON array, for json_array_elements_text(). Every number is finite where it
    comes in (bridge.protocol), so none turns into JSON's null."""
    return orjson.dumps(list(values)).decode()
