"""What one re-check of a web process's open sockets costs (telemetry.recheck), without a stack:
--sockets signed-in sockets, each of a user of its own with a session of its own, each watching
--watch devices shared with it through a group, on a database of its own.

python -m bench.recheck_cost --sockets 2000 --watch 20 --rounds 5
python -m bench.recheck_cost --database-url postgres://user@host:5432/name   # an empty database

Prints one JSON line per round: its wall and CPU time and its queries; the first round decodes
every session, later ones only those whose data changed (none here). A web process re-checks
every RECHECK_SECONDS, on its database thread."""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from bench.in_process import setup_django

GROUPS = 50
DEVICES_PER_GROUP = 40


def prepare(sockets, watch):
    """Users, each in one group, their sessions, and devices shared with the groups; returns the
    sockets' grants."""
    from django.contrib.auth import get_user_model, login
    from django.contrib.auth.models import Group
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.management import call_command
    from django.test import RequestFactory

    from devices.models import Device
    from telemetry.recheck import Grant

    call_command("migrate", verbosity=0)
    User = get_user_model()
    owner = User.objects.create(username="recheck-owner")
    groups = Group.objects.bulk_create([Group(name=f"group-{number}") for number in range(GROUPS)])
    devices = Device.objects.bulk_create(
        [Device(id=f"device-{number:05d}", owner=owner) for number in range(GROUPS * DEVICES_PER_GROUP)]
    )
    Device.groups.through.objects.bulk_create([
        Device.groups.through(device_id=device.pk, group_id=groups[number // DEVICES_PER_GROUP].pk)
        for number, device in enumerate(devices)
    ])
    User.objects.bulk_create([User(username=f"user-{number:05d}", password="!") for number in range(sockets)])
    users = list(User.objects.filter(username__startswith="user-").order_by("username"))
    User.groups.through.objects.bulk_create([
        User.groups.through(user_id=user.pk, group_id=groups[number % GROUPS].pk) for number, user in enumerate(users)
    ])
    grants = []
    factory = RequestFactory()
    for number, user in enumerate(users):
        request = factory.get("/")
        request.session = SessionStore()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        request.session.save()
        group = number % GROUPS
        watched = frozenset(devices[group * DEVICES_PER_GROUP + n].pk for n in range(watch))
        grants.append(Grant(request.session.session_key, user.pk, watched))
    return grants


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sockets", type=int, default=2000)
    parser.add_argument("--watch", type=int, default=20, help=f"devices each socket watches, at most {DEVICES_PER_GROUP}")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--database-url", help="default: SQLite in a temporary directory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="telehub-recheck-cost-") as workdir:
        setup_django(args.database_url or f"sqlite:///{Path(workdir) / 'recheck.sqlite3'}")
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        from telemetry.recheck import StoredSessions, verdicts

        grants = prepare(args.sockets, min(args.watch, DEVICES_PER_GROUP))
        print(f"re-checking {len(grants)} sockets of {len(grants)} users, {args.watch} devices each", file=sys.stderr)
        sessions = StoredSessions()
        for round_number in range(1, args.rounds + 1):
            started, cpu = time.perf_counter(), time.process_time()
            with CaptureQueriesContext(connection) as queries:
                results = verdicts(grants, sessions)
            figures = {
                "round": round_number, "sockets": len(grants), "ms": round((time.perf_counter() - started) * 1000, 1),
                "cpu_ms": round((time.process_time() - cpu) * 1000, 1), "queries": len(queries),
                "signed_out": sum(result is None for result in results),
                "devices_allowed": sum(len(result) for result in results if result is not None),
            }
            print(json.dumps(figures), flush=True)
        print("command: python -m bench.recheck_cost " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
