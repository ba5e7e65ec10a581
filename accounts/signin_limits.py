"""Limits on failed sign-ins, so passwords cannot be guessed at speed.

Three counts of failures, each in fixed windows of HUB_SIGNIN_WINDOW seconds:
- per username and client address (HUB_SIGNIN_LIMIT_PER_USERNAME_AND_ADDRESS, 5): one machine
  guessing one account's password;
- per client address (HUB_SIGNIN_LIMIT_PER_ADDRESS, 20): one machine trying many accounts;
- per username (HUB_SIGNIN_LIMIT_PER_USERNAME, 100): many machines guessing one account.
A sign-in is refused while any count it falls under is at its limit, whether its password is
right or not. One machine's failures thus never lock an account's owner out elsewhere; only
failures from many addresses at once can, for the rest of the window. A successful sign-in
clears its username-and-address count.

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
    counts = cache.get_many([key for key, _ in _counters(username, address, now)])
    if any(counts.get(key, 0) >= limit for key, limit in _counters(username, address, now)):
        return _window_end(now) - math.floor(now)
    return 0


@_unlimited_while_redis_is_down
def record_failure(username, address, now=None):
    now = time.time() if now is None else now
    timeout = _window_end(now) - math.floor(now) + 1
    for key, limit in _counters(username, address, now):
        cache.add(key, 0, timeout)
        try:
            count = cache.incr(key)
        except ValueError:  # the window's count expired between add() and incr()
            cache.add(key, 1, timeout)
            count = 1
        if count == limit:
            logger.warning("sign-ins refused for %d s: %d failures (%s), username %r, address %s",
                           timeout - 1, count, key.split(":")[1], username[:150], address)


@_unlimited_while_redis_is_down
def clear_username_and_address(username, address, now=None):
    now = time.time() if now is None else now
    cache.delete(_counters(username, address, now)[0][0])


def _counters(username, address, now):
    """(cache key, limit) of each count a sign-in falls under, the username-and-address one first."""
    window = int(now // settings.SIGNIN_WINDOW_SECONDS)
    name = _digest(unicodedata.normalize("NFKC", username).strip().casefold())
    where = _digest(address)
    limits = settings.SIGNIN_LIMITS
    return [
        (f"signin:username_and_address:{name}:{where}:{window}", limits["username_and_address"]),
        (f"signin:address:{where}:{window}", limits["address"]),
        (f"signin:username:{name}:{window}", limits["username"]),
    ]


def _window_end(now):
    return (int(now // settings.SIGNIN_WINDOW_SECONDS) + 1) * settings.SIGNIN_WINDOW_SECONDS


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
