"""Limits on failed sign-ins, so passwords cannot be guessed at speed.

Three counts of failures, each kept for HUB_SIGNIN_WINDOW seconds from its first failure:
- per username and client address (HUB_SIGNIN_LIMIT_PER_USERNAME_AND_ADDRESS, 5): one machine
  guessing one account's password;
- per client address (HUB_SIGNIN_LIMIT_PER_ADDRESS, 20): one machine trying many accounts;
- per username (HUB_SIGNIN_LIMIT_PER_USERNAME, 100): many machines guessing one account.
A sign-in is refused while any count it falls under is at its limit, whether its password is
right or not. One machine's failures thus never lock an account's owner out elsewhere; only
failures from many addresses at once can, for the rest of the window. A successful sign-in
clears its username-and-address count. A count's window opens with its first failure rather
than at fixed times of the clock, so failures on either side of a clock boundary add up.

The counts live in Django's cache: Redis when HUB_REDIS_URL is set, so that every web process
counts together; process memory otherwise (runhub, one process). While Redis is unreachable,
sign-ins are not limited (and each says so in the log) rather than all refused.
"""
import functools
import hashlib
import logging
import math
import time
import unicodedata

from django.conf import settings
from django.core.cache import cache
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)


def _unlimited_while_redis_is_down(function):
    @functools.wraps(function)
    def counting(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except RedisError as error:
            logger.warning("sign-in limits not applied: Redis is unreachable (%s)", error)
            return 0

    return counting


@_unlimited_while_redis_is_down
def retry_after(username, address, now=None):
    """Seconds until a sign-in as `username` from `address` may be tried again; 0: now."""
    now = time.time() if now is None else now
    counters = _counters(username, address)
    stored = cache.get_many([name for key, _ in counters for name in (key, _since(key))])
    window = settings.SIGNIN_WINDOW_SECONDS
    waits = [
        stored.get(_since(key), now) + window - now
        for key, limit in counters if stored.get(key, 0) >= limit
    ]
    return max(0, math.ceil(max(waits, default=0)))


@_unlimited_while_redis_is_down
def record_failure(username, address, now=None):
    now = time.time() if now is None else now
    window = settings.SIGNIN_WINDOW_SECONDS
    for key, limit in _counters(username, address):
        if cache.add(key, 0, window):  # the count's first failure opens its window
            cache.set(_since(key), now, window)
        try:
            count = cache.incr(key)
        except ValueError:  # the count expired between add() and incr()
            cache.add(key, 1, window)
            cache.set(_since(key), now, window)
            count = 1
        if count == limit:
            logger.warning("sign-ins refused for up to %d s: %d failures (%s), username %r, address %s",
                           window, count, key.split(":")[1], username[:150], address)


@_unlimited_while_redis_is_down
def clear_username_and_address(username, address):
    key = _counters(username, address)[0][0]
    cache.delete_many([key, _since(key)])


def _counters(username, address):
    """(cache key, limit) of each count a sign-in falls under, the username-and-address one first."""
    name = _digest(unicodedata.normalize("NFKC", username).strip().casefold())
    where = _digest(address)
    limits = settings.SIGNIN_LIMITS
    return [
        (f"signin:username_and_address:{name}:{where}", limits["username_and_address"]),
        (f"signin:address:{where}", limits["address"]),
        (f"signin:username:{name}", limits["username"]),
    ]


def _since(key):
    """The cache key holding the time of a count's first failure."""
    return f"{key}:since"


def _digest(text):
    """Keys of a bounded length whatever was typed."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def count_failure(sender, credentials, request=None, **kwargs):
    """Receives Django's user_login_failed, from every form that signs in (the hub's and the admin's)."""
    if request is not None:
        record_failure(str(credentials.get("username", "")), client_address(request))


def clear_on_success(sender, request, user, **kwargs):
    """Receives Django's user_logged_in."""
    if request is not None:
        clear_username_and_address(user.get_username(), client_address(request))


def client_address(request):
    """The client's address: daphne's --proxy-headers puts the proxy's X-Forwarded-For there."""
    return request.META.get("REMOTE_ADDR") or "unknown"
