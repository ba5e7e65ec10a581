"""HUB_REDIS_SENTINELS: the channel layer, the cache and /readyz find Redis through a real
redis-sentinel, and follow it when the master dies: a dashboard keeps getting readings."""
import time
import urllib.error
import urllib.request

import pytest
import redis

from tests.conftest import PASSWORD
from tests.live import TIMEOUT, Device, LiveHub, wait_until
from tests.servers import RedisReplica, RedisSentinel, RedisServer

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

# After the master dies: Sentinel calls it down after 1 s, then promotes the replica; clients
# reconnect to the new master. Readings must flow again well within this.
FAILOVER_SECONDS = 60


@pytest.fixture
def sentinel_redis(tmp_path):
    """A master, its replica and a sentinel watching them; the sentinel knows the replica."""
    master = RedisServer(tmp_path / "master")
    replica = RedisReplica(tmp_path / "replica", master)
    sentinel = RedisSentinel(tmp_path / "sentinel", master)
    servers = [master, replica, sentinel]
    for server in servers:
        server.tmpdir.mkdir()
        server.start()
    asked = redis.Redis(port=sentinel.port, decode_responses=True)
    wait_until(lambda: any(replica_info["port"] == replica.port for replica_info in
                           asked.sentinel_slaves(RedisSentinel.MASTER_NAME)), message="the sentinel to find the replica")
    wait_until(lambda: redis.Redis(port=replica.port).info("replication")["master_link_status"] == "up",
               message="the replica to sync")
    yield master, replica, sentinel
    asked.close()
    for server in servers:
        server.stop()


def readyz(hub):
    try:
        with urllib.request.urlopen(hub.url + "readyz", timeout=TIMEOUT) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_a_dashboard_keeps_streaming_through_a_redis_failover(sentinel_redis, mosquitto_server, tmp_path, owner, device):
    from django.conf import settings

    master, replica, sentinel = sentinel_redis
    hub = LiveHub(settings.DATABASES["default"], "", mosquitto_server, tmp_path,
                  redis_sentinels=sentinel.address, redis_sentinel_master=RedisSentinel.MASTER_NAME)
    sensor = None
    try:
        hub.start()
        assert readyz(hub) == 200
        cookie = hub.login(owner.username, PASSWORD)
        dashboard = hub.dashboard(f"ws/devices/{device.id}/", cookie)
        dashboard.frame(type="snapshot")
        sensor = Device(hub.mqtt_url, device.id, device.mqtt_password).connect()
        sensor.send_reading({"temp": 1.0})
        dashboard.frame(type="readings", device=device.id)

        master.kill()
        asked = redis.Redis(port=sentinel.port, decode_responses=True)
        wait_until(lambda: int(asked.sentinel_get_master_addr_by_name(RedisSentinel.MASTER_NAME)[1]) == replica.port,
                   timeout=FAILOVER_SECONDS, message="the sentinel to promote the replica")
        asked.close()

        # Readings sent after the failover reach the same dashboard, within a bounded wait.
        deadline = time.monotonic() + FAILOVER_SECONDS
        value = 2.0
        while True:
            sensor.send_reading({"temp": value})
            try:
                frame = dashboard.frame(type="readings", device=device.id, timeout=1)
            except AssertionError:
                assert time.monotonic() < deadline, "no reading reached the dashboard after the failover"
                value += 1
                continue
            if frame["items"][-1]["values"]["temp"] >= 2.0:
                break
        assert redis.Redis(port=replica.port).info("replication")["role"] == "master"
        # Readiness too: a check whose connection died with the old master may answer 503 once,
        # and the next finds the new master through the sentinel.
        wait_until(lambda: readyz(hub) == 200, timeout=FAILOVER_SECONDS, message="/readyz through the new master")
        # The cache (sign-in counts) follows the new master too: signing in still works.
        assert hub.login(owner.username, PASSWORD)
    finally:
        if sensor is not None:
            sensor.go_offline()
        hub.stop()
