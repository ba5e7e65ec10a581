"""Keeps the broker's password and ACL files in step with the device registry.

A registry change (a device registered, its token rotated or revoked, an account added) shows
in a cheap fingerprint query made every second; the files are then rewritten, and the broker,
run by mosquitto/run-broker.sh, reloads them within a second of the change. Every bridge may
run this: they all write the same files.
"""
import asyncio
import logging
import time

from channels.db import database_sync_to_async
from django.db import DatabaseError

from devices.broker_auth import registry_fingerprint, render, write_files
from devices.credentials import ensure_account
from devices.models import BrokerAccount

logger = logging.getLogger("bridge")

CHECK_SECONDS = 1.0
# Rewritten from scratch now and then anyway, in case the files were edited or lost.
REBUILD_SECONDS = 60.0


class BrokerAuthSync:
    """Writes the files from the registry; `bridge_login` (user, password), if given, is kept in
    the registry as a bridge account, so the bridge can always log in itself."""

    def __init__(self, directory, bridge_login=None):
        self.directory = directory
        self.bridge_login = bridge_login
        self._fingerprint = None
        self._rebuilt = 0.0

    def sync(self):
        """Rewrites the files if the registry changed since the last call; True if they changed."""
        fingerprint = registry_fingerprint()
        if fingerprint == self._fingerprint and time.monotonic() - self._rebuilt < REBUILD_SECONDS:
            return False
        if self.bridge_login is not None:
            username, password = self.bridge_login
            ensure_account(username, password, BrokerAccount.Role.BRIDGE)
            fingerprint = registry_fingerprint()
        passwords, acl = render()
        changed = write_files(self.directory, passwords, acl)
        self._fingerprint, self._rebuilt = fingerprint, time.monotonic()
        if changed:
            logger.info("broker logins written to %s: %d logins", self.directory, passwords.count("\n"))
        return changed

    async def run_forever(self):
        while True:
            try:
                await database_sync_to_async(self.sync)()
            except (DatabaseError, OSError) as exc:
                logger.error("could not update the broker's logins in %s: %s", self.directory, exc)
            await asyncio.sleep(CHECK_SECONDS)
