"""Prepares the benchmark's database: an operator, N devices, broker accounts, a signed-in session.

Run by bench.stack in the hub's environment:
python -m bench.prepare --devices N [--account USERNAME ROLE PASSWORD ...]
Prints {"cookie": "sessionid=..."} as JSON."""
import argparse
import json
import os

import django


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, required=True)
    parser.add_argument("--account", nargs=3, action="append", default=[], metavar=("USERNAME", "ROLE", "PASSWORD"))
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
    django.setup()

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore

    from devices.credentials import ensure_account
    from devices.models import Device

    operator, _ = get_user_model().objects.get_or_create(username="bench")
    Device.objects.bulk_create(
        [Device(id=device_id, name=device_id, owner=operator) for device_id in device_ids(args.devices)],
        ignore_conflicts=True,
    )
    for username, role, password in args.account:
        ensure_account(username, password, role)
    session = SessionStore()
    session[SESSION_KEY] = str(operator.pk)
    session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
    session[HASH_SESSION_KEY] = operator.get_session_auth_hash()
    session.save()
    print(json.dumps({"cookie": f"{settings.SESSION_COOKIE_NAME}={session.session_key}"}))


def device_ids(count):
    return [f"bench-{number:05d}" for number in range(count)]


if __name__ == "__main__":
    main()
