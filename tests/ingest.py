"""Watching what the real bridge does with what devices send: its counters, read from the
`stats:` line it logs every HUB_BRIDGE_STATS_INTERVAL seconds (1 s in tests), and a database
that refuses rows the bridge's validation lets through."""
import contextlib
import re
import uuid
from collections import Counter

from tests.live import execute_sql, wait_until

STATS_RE = re.compile(r"stats: received=\d+ .*rejected=\{([^}]*)\}")


def rejections(hub, start=0):
    """The rejections of the bridge's latest stats line after log offset `start`, by reason
    (counted since that bridge started); empty before its first line."""
    lines = STATS_RE.findall(hub.bridge.log()[start:])
    items = lines[-1].split(", ") if lines and lines[-1] else []
    return Counter({reason: int(count) for reason, count in (item.split("=") for item in items)})


def counted_so_far(hub):
    """The running bridge's rejections, from a stats line it writes from now on."""
    log = len(hub.bridge.log())
    hub.bridge.wait_for_log(r"stats: ", start=log)
    return rejections(hub, log)


def wait_for_rejections(hub, expected, before=None, start=0, exactly=False):
    """Waits until the bridge has counted `expected` ({reason: count}) more rejections than
    `before`; `exactly`: and none of any other reason."""
    before = before or Counter()

    def counted():
        now = rejections(hub, start)
        more = {reason: now[reason] - before[reason] for reason in now.keys() | before.keys() | expected.keys()}
        if exactly:
            return {reason: count for reason, count in more.items() if count} == dict(expected)
        return all(more[reason] == count for reason, count in expected.items())

    return wait_until(counted, message=f"the bridge to count {dict(expected)} (see its log)")


@contextlib.contextmanager
def database_refuses(database, table, refused):
    """The database refuses, with an integrity error, each row of `table` for which `refused`
    holds (SQL over the row's columns, each written `{row}column`): a rule the hub knows nothing
    of, so what it refuses passed the bridge's validation. PostgreSQL gets a CHECK constraint;
    SQLite, which cannot add one to a table, triggers that RAISE(ABORT)."""
    name = f"refuse_{uuid.uuid4().hex[:12]}"
    if database["ENGINE"] == "django.db.backends.sqlite3":
        events = ("INSERT", "UPDATE")
        for event in events:
            execute_sql(database, f"CREATE TRIGGER {name}_{event} BEFORE {event} ON {table} "
                                  f"WHEN {refused.format(row='NEW.')} BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")
        drop = [f"DROP TRIGGER {name}_{event}" for event in events]
    else:
        execute_sql(database, f"ALTER TABLE {table} ADD CONSTRAINT {name} CHECK (NOT ({refused.format(row='')})) NOT VALID")
        drop = [f"ALTER TABLE {table} DROP CONSTRAINT {name}"]
    try:
        yield
    finally:
        for statement in drop:
            execute_sql(database, statement)
