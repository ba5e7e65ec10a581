"""Redis through Sentinel for the parts that do not take channels-redis's host dicts: Django's
Redis cache, and the ping /readyz sends. Each asks Sentinel for the master when it connects, so
a failover is followed at the next connection."""
import contextlib

import redis.asyncio.sentinel
import redis.sentinel
from django.conf import settings


class CachePool(redis.sentinel.SentinelConnectionPool):
    """Django's RedisCache makes its pool with `pool_class.from_url(LOCATION, **OPTIONS)`: with
    Sentinel, LOCATION is the master's name and OPTIONS carry the sentinels."""

    @classmethod
    def from_url(cls, master_name, *, sentinels, **options):
        return cls(master_name, redis.sentinel.Sentinel(sentinels), **options)


@contextlib.asynccontextmanager
async def master(**options):
    """An asyncio client of the master Sentinel names now, closed with the sentinels' own."""
    sentinel = redis.asyncio.sentinel.Sentinel(settings.REDIS_SENTINELS, sentinel_kwargs=options, **options)
    client = sentinel.master_for(settings.REDIS_SENTINEL_MASTER)
    try:
        yield client
    finally:
        await client.aclose()
        for each in sentinel.sentinels:
            await each.aclose()
