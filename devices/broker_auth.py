"""Mosquitto's password and ACL files, rendered from the device registry.

The database is the one source of truth: the files are derived from it and can be rebuilt at
any time, from the rules in devices.broker_rules. Devices need no lines in the ACL: its
`pattern` rules give every login the topics under its own username, and a device's username is
its id. The hub's accounts (bridges,
gateways) get `user` blocks. docs/security.md explains the choice over the dynamic security
plugin.
"""
import os
import tempfile
from pathlib import Path

from django.db.models import Count, Max

from devices.broker_rules import PATTERN_RULES, ROLE_RULES
from devices.models import BrokerAccount, Device

PASSWORD_FILE = "passwords"
ACL_FILE = "acl"

def registry_fingerprint():
    """Changes whenever a login is added, changed or removed: cheap enough to ask every second."""
    devices = Device.objects.exclude(password_hash="").aggregate(count=Count("pk"), last=Max("credentials_changed"))
    accounts = BrokerAccount.objects.aggregate(count=Count("pk"), last=Max("changed"))
    return (devices["count"], devices["last"], accounts["count"], accounts["last"])


def render():
    """The password file's and the ACL file's text, the same for the same registry."""
    logins = list(Device.objects.exclude(password_hash="").order_by("pk").values_list("pk", "password_hash"))
    accounts = list(BrokerAccount.objects.order_by("username"))
    logins += [(account.username, account.password_hash) for account in accounts]
    passwords = "".join(f"{username}:{password_hash}\n" for username, password_hash in sorted(logins))
    acl = ["# Written by Telehub from its device registry: edits here are overwritten.", "",
           "# Every device: its own topics only (a device's username is its id)."]
    acl += [f"pattern {access} {pattern}" for access, pattern in PATTERN_RULES] + [""]
    for account in accounts:
        rules = [f"topic {access} {topic}" for access, topic in ROLE_RULES[account.role]]
        acl += [f"# {account.get_role_display()}", f"user {account.username}", *rules, ""]
    return passwords, "\n".join(acl)


def write_files(directory, passwords, acl):
    """Replaces the files atomically (the broker never reads half a file); True if they changed."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    changed = False
    for name, text in ((PASSWORD_FILE, passwords), (ACL_FILE, acl)):
        path = directory / name
        if path.exists() and path.read_text() == text:
            continue
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{name}.")
        with os.fdopen(handle, "w") as file:
            file.write(text)
        # Readable by the broker's own user; the hashes are of 256-bit random tokens.
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
        changed = True
    return changed
