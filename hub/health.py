"""Health endpoints: /healthz, the process answers (liveness); /readyz, it can do its work,
its database and Redis answering (readiness). Neither needs a login; neither says more than
what failed (the log has the details)."""
import asyncio
import contextlib
import logging
import threading

import redis.asyncio
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.utils import load_backend
from django.http import JsonResponse

from hub import sentinel

logger = logging.getLogger("hub.health")

# Each check's bound: a server that accepts and never answers must not hang the check.
CHECK_SECONDS = 2.0
# How long the database check's own connection may take to open (PostgreSQL): a database that
# never answers frees the check's thread after this, so a later check can see it come back.
CONNECT_SECONDS = 5

_database_answer = None  # the database check under way, which checks asked meanwhile share


def healthz(request):
    """Liveness for load balancers and docker-compose: the web process answers."""
    return JsonResponse({"ok": True})


async def readyz(request):
    """200 when the database and Redis answer, else 503 naming what failed."""
    checks = dict(await asyncio.gather(_check("database", _ask_database), _check("redis", _ask_redis)))
    ready = all(result in ("ok", "not used") for result in checks.values())
    return JsonResponse({"ok": ready, "checks": checks}, status=200 if ready else 503)


async def _check(name, ask):
    try:
        async with asyncio.timeout(CHECK_SECONDS):
            return name, await ask()
    except TimeoutError:
        logger.warning("readiness: %s did not answer within %.0f s", name, CHECK_SECONDS)
        return name, f"no answer within {CHECK_SECONDS:.0f} s"
    except Exception as error:
        logger.warning("readiness: %s failed: %r", name, error)
        return name, f"failed: {type(error).__name__}"


async def _ask_database():
    """Asks the database from a daemon thread of its own, one at a time: a database that does
    not answer holds that thread, never a thread the process needs, nor its exit; the checks
    that come meanwhile wait for the same answer."""
    global _database_answer
    if _database_answer is None or _database_answer.done():
        loop = asyncio.get_running_loop()
        _database_answer = answer = loop.create_future()
        threading.Thread(target=_query_database, args=(loop, answer), name="readyz-database", daemon=True).start()
    return await asyncio.shield(_database_answer)


def _query_database(loop, answer):
    """SELECT 1 on a connection of the check's own, opened with a bounded wait and closed after."""
    database = connections.settings[DEFAULT_DB_ALIAS]
    options = dict(database.get("OPTIONS", {}))
    if database["ENGINE"] == "django.db.backends.postgresql":
        options["connect_timeout"] = CONNECT_SECONDS
    connection = load_backend(database["ENGINE"]).DatabaseWrapper({**database, "OPTIONS": options}, DEFAULT_DB_ALIAS)
    try:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        finally:
            connection.close()
    except Exception as error:
        settle = (answer.set_exception, error)
    else:
        settle = (answer.set_result, "ok")
    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: the process is leaving
        loop.call_soon_threadsafe(*settle)


async def _ask_redis():
    if not settings.USES_REDIS:
        return "not used"  # the in-process channel layer of runhub
    timeouts = {"socket_connect_timeout": CHECK_SECONDS, "socket_timeout": CHECK_SECONDS}
    if settings.REDIS_SENTINELS:
        connection = sentinel.master(**timeouts)
    else:
        connection = contextlib.aclosing(redis.asyncio.from_url(settings.REDIS_URL, **timeouts))
    async with connection as client:
        await client.ping()
    return "ok"
