"""HUB_DATABASE_REPLICA_URL on a real PostgreSQL streaming replica: history and lists come from
the replica (what it has not replayed yet is not shown), writes and single objects from the
primary."""
import json
import os
import subprocess
import sys

from tests.servers import ROOT, PostgresReplica, PostgresServer


def test_history_and_lists_come_from_the_replica_and_writes_go_to_the_primary(tmp_path):
    primary = PostgresServer(tmp_path / "primary")
    (tmp_path / "primary").mkdir()
    (tmp_path / "replica").mkdir()
    primary.start()
    replica = PostgresReplica(tmp_path / "replica", primary)
    try:
        env = {
            **os.environ, "DJANGO_SETTINGS_MODULE": "hub.settings", "HUB_SECRET_KEY": "replica-test-" + "x" * 40,
            "HUB_ALLOWED_HOSTS": "testserver", "HUB_DATABASE_URL": primary.url, "HUB_DATA_DIR": str(tmp_path),
        }
        env.pop("HUB_REDIS_URL", None)
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=300)
        replica.start()
        probe = subprocess.run(
            [sys.executable, "-m", "tests.replica_probe"], cwd=ROOT, env={**env, "HUB_DATABASE_REPLICA_URL": replica.url},
            capture_output=True, text=True, timeout=300,
        )
        assert probe.returncode == 0, probe.stderr[-3000:]
        seen = json.loads(probe.stdout.strip().splitlines()[-1])
    finally:
        replica.remove()
        primary.remove()
    assert seen["points_replayed"] == 1 and seen["devices_listed"] == ["sensor-1"]
    # Replay paused: the primary holds the second reading, the API shows what the replica has.
    assert seen["points_on_primary"] == 2 and seen["points_paused"] == 1
    assert seen["command_status"] == 201 and seen["command_on_primary"] and not seen["command_on_replica"]
    assert seen["command_got"] == 200, "one command is read from the primary: there at once"
    assert not seen["command_listed_paused"]
    assert seen["points_resumed"] == 2 and seen["command_listed_resumed"]
