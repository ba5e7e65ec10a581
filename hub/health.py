"""Health endpoints: /healthz, the process answers (liveness); /readyz, it can do its work,
its database and Redis answering (readiness). Neither needs a login; neither says more than
what failed (the log has the details)."""
import asyncio
import logging

import redis.asyncio
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.http import JsonResponse

logger = logging.getLogger("hub.health")

# Each check's bound: a server that accepts and never answers must not hang the check.
CHECK_SECONDS = 2.0


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


@sync_to_async(thread_sensitive=False)
def _ask_database():
    """A query on a fresh connection, closed after, in a thread of the pool: one that hangs
    holds no request's thread."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        connection.close()
    return "ok"


async def _ask_redis():
    if not settings.REDIS_URL:
        return "not used"  # the in-process channel layer of runhub
    client = redis.asyncio.from_url(
        settings.REDIS_URL, socket_connect_timeout=CHECK_SECONDS, socket_timeout=CHECK_SECONDS
    )
    try:
        await client.ping()
    finally:
        await client.aclose()
    return "ok"
