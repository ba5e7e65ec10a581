"""Access re-checked on open sockets (docs/security.md).

A socket is signed in when it opens, and a device is checked when the socket asks for it. For
as long as it stays open after that, its user may be deactivated, sign out, change their
password, or lose a device (removed from the group it is shared with, the device deleted or
given to another owner). So every RECHECK_SECONDS one task per web process checks all of the
process's sockets together, in five queries whatever their number (bench.recheck_cost
measures it):
- the sessions still stored and unexpired, and the user and password hash each was signed in
  with: the test of django.contrib.auth.get_user(), done for many sessions at once;
- the users still active;
- the devices each user may still watch (devices.access).
A socket whose session or user no longer holds is closed with 4401; a device its user may no
longer watch is taken from it with a `forbidden` frame.
"""
import asyncio
import logging
from dataclasses import dataclass
from importlib import import_module

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from devices import access
from hub.tasks import start_supervised

logger = logging.getLogger("telemetry.recheck")

# At most this long plus one re-check's run after a change, a socket still gets what its
# user may no longer see. The promise is 5 s.
RECHECK_SECONDS = 2.0


@dataclass(frozen=True)
class Grant:
    """What an open socket was given: a user, through a session, and devices."""

    session_key: str | None  # None: no session in the socket's scope; its user alone is checked
    user_id: int
    device_ids: frozenset


class StoredSessions:
    """The stored sessions of open sockets, decoded once for as long as their data stays the
    same: decoding checks a signature, the costliest step of a re-check."""

    def __init__(self):
        self.store_class = import_module(settings.SESSION_ENGINE).SessionStore
        self._decoded = {}  # session key -> (session data, decoded)

    def read(self, session_keys):
        """{session key: its decoded data} of those sessions still stored and unexpired. For
        Django's database-backed session engines (the hub's is the default, db)."""
        model = self.store_class.get_model_class()
        rows = model.objects.filter(session_key__in=session_keys, expire_date__gt=timezone.now())
        decoded = {}
        for key, data in rows.values_list("session_key", "session_data"):
            known = self._decoded.get(key)
            decoded[key] = known[1] if known is not None and known[0] == data else self.store_class().decode(data)
            self._decoded[key] = (data, decoded[key])
        for key in self._decoded.keys() - decoded.keys():
            del self._decoded[key]
        return decoded


def signed_in(session, user, auth_hashes):
    """Whether `session` (decoded) still signs in `user`, as django.contrib.auth.get_user()
    decides: the same user through a backend still configured, and the hash of the password
    the user had then, under the secret key or one of its fallbacks. `auth_hashes` caches
    each user's current hashes."""
    if str(session.get(SESSION_KEY)) != str(user.pk) or session.get(BACKEND_SESSION_KEY) not in settings.AUTHENTICATION_BACKENDS:
        return False
    session_hash = session.get(HASH_SESSION_KEY)
    if not session_hash:
        return False
    hashes = auth_hashes.get(user.pk)
    if hashes is None:
        hashes = auth_hashes[user.pk] = [user.get_session_auth_hash(), *user.get_session_auth_fallback_hash()]
    return any(constant_time_compare(session_hash, known) for known in hashes)


def verdicts(grants, sessions):
    """For each grant, None when its session or user no longer holds, else the ids among its
    devices its user may still watch. `sessions`: a StoredSessions."""
    stored = sessions.read({grant.session_key for grant in grants if grant.session_key is not None})
    users = {
        user.pk: user for user in get_user_model().objects.filter(pk__in={grant.user_id for grant in grants})
        if getattr(user, "is_active", True)
    }
    auth_hashes = {}
    valid = [
        grant.user_id in users and (
            grant.session_key is None
            or grant.session_key in stored and signed_in(stored[grant.session_key], users[grant.user_id], auth_hashes)
        )
        for grant in grants
    ]
    watching = {grant.user_id for grant, ok in zip(grants, valid) if ok}
    device_ids = set().union(*(grant.device_ids for grant, ok in zip(grants, valid) if ok))
    allowed = access.watchable_ids_by_user([users[user_id] for user_id in watching], device_ids) if device_ids else {}
    return [
        (grant.device_ids & allowed.get(grant.user_id, set())) if ok else None
        for grant, ok in zip(grants, valid)
    ]


class AccessRecheck:
    """The open sockets of one web process, re-checked together every RECHECK_SECONDS.

    A socket has `grant()`, `signed_out()` and `forbid(device_ids)` (telemetry.consumers)."""

    def __init__(self):
        self.sockets = set()
        self.sessions = None
        self._task = None

    def add(self, socket):
        self.sockets.add(socket)
        if self._task is None:
            self.sessions = StoredSessions()
            self._task = start_supervised("access_recheck", self._recheck_forever)

    def discard(self, socket):
        self.sockets.discard(socket)

    async def _recheck_forever(self):
        while True:
            await asyncio.sleep(RECHECK_SECONDS)
            await self.recheck()

    async def recheck(self):
        sockets = list(self.sockets)
        if not sockets:
            return
        grants = [socket.grant() for socket in sockets]
        results = await database_sync_to_async(verdicts)(grants, self.sessions)
        for socket, grant, allowed in zip(sockets, grants, results):
            if socket not in self.sockets:
                continue  # closed meanwhile
            try:
                if allowed is None:
                    await socket.signed_out()
                elif allowed != grant.device_ids:
                    await socket.forbid(grant.device_ids - allowed)
            except Exception:  # one socket's failure must not spare the others
                logger.exception("access recheck: could not end or restrict a socket of user %s", grant.user_id)

