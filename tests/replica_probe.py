"""Run by tests/test_replica.py in a process of its own, with HUB_DATABASE_URL on a primary and
HUB_DATABASE_REPLICA_URL on its streaming replica: asks the API while the replica's replay is
paused and after it resumes, and prints what each database and the API answered, as JSON."""
import json
import time

import django

django.setup()

from django.db import connections  # noqa: E402
from django.test import Client  # noqa: E402

from accounts.tokens import issue_token  # noqa: E402
from devices.models import Command, Device  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from telemetry.models import Reading, ValueKind  # noqa: E402

TIMEOUT = 30


def sql(alias, statement):
    with connections[alias].cursor() as cursor:
        cursor.execute(statement)
        return cursor.fetchone()[0] if cursor.description else None


def wait_for_replay():
    """Until the replica has replayed everything the primary has written so far."""
    written = sql("default", "SELECT pg_current_wal_lsn()::text")
    deadline = time.monotonic() + TIMEOUT
    while not sql("replica", f"SELECT pg_last_wal_replay_lsn() >= '{written}'::pg_lsn"):
        if time.monotonic() > deadline:
            raise TimeoutError("the replica did not catch up")
        time.sleep(0.05)


def reading(device, ts):
    Reading.objects.create(device=device, key="t", ts=ts, kind=ValueKind.NUMBER, num=ts)


owner = get_user_model().objects.create_user("owner", password="unused-password")
device = Device.objects.create(id="sensor-1", owner=owner)
_, token = issue_token(owner, "probe")
api = Client(HTTP_AUTHORIZATION=f"Bearer {token}")


def points():
    response = api.get("/api/devices/sensor-1/readings", {"keys": "t", "from": 0, "to": 10**13})
    return len(response.json()["series"]["t"]["points"]) if response.status_code == 200 else response.status_code


def listed_commands():
    return [item["id"] for item in api.get("/api/commands/").json()]


reading(device, 1000)
wait_for_replay()
seen = {"points_replayed": points(), "devices_listed": [item["id"] for item in api.get("/api/devices/").json()]}

sql("replica", "SELECT pg_wal_replay_pause()")
reading(device, 2000)
sent = api.post("/api/devices/sensor-1/commands/", {"name": "ping"}, content_type="application/json")
command_id = sent.json()["id"]
seen.update(
    points_paused=points(),
    points_on_primary=Reading.objects.using("default").count(),
    command_status=sent.status_code,
    command_on_primary=Command.objects.using("default").filter(pk=command_id).exists(),
    command_on_replica=Command.objects.using("replica").filter(pk=command_id).exists(),
    command_got=api.get(f"/api/commands/{command_id}/").status_code,
    command_listed_paused=command_id in listed_commands(),
)

sql("replica", "SELECT pg_wal_replay_resume()")
wait_for_replay()
seen.update(points_resumed=points(), command_listed_resumed=command_id in listed_commands())
print(json.dumps(seen))
