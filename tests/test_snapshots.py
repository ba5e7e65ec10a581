"""Snapshots read for many sockets at once: one query for all who ask together, never an old one."""
import asyncio
import threading

import orjson
from asgiref.sync import sync_to_async

from devices.models import Device
from telemetry import snapshots
from telemetry.snapshots import SnapshotReader, device_snapshots


def counted(monkeypatch, after_query=None):
    """Counts the snapshot queries: the device ids of each, in order. `after_query(number)` runs
    once a query has read its rows."""
    queries = []

    def counting_snapshots(device_ids):
        queries.append(set(device_ids))
        frames = device_snapshots(device_ids)
        if after_query is not None:
            after_query(len(queries))
        return frames

    monkeypatch.setattr(snapshots, "device_snapshots", counting_snapshots)
    return queries


async def test_sockets_asking_together_share_one_query(make_user, make_device, monkeypatch):
    owner = await sync_to_async(make_user)("owner")
    for device_id in ("d1", "d2"):
        await sync_to_async(make_device)(device_id, owner, seq=7)
    queries = counted(monkeypatch)
    reader = SnapshotReader()

    results = await asyncio.gather(reader.read(["d1"]), reader.read(["d2", "d1"]), reader.read(["nowhere"]))

    assert [[(device_id, seq) for device_id, seq, _ in result] for result in results] == [
        [("d1", 7)], [("d2", 7), ("d1", 7)], [],
    ]
    assert queries == [{"d1", "d2", "nowhere"}]
    frame = orjson.loads(results[0][0][2])
    assert (frame["type"], frame["device"], frame["seq"]) == ("snapshot", "d1", 7)


async def test_a_socket_asking_while_a_query_runs_gets_a_newer_one(make_user, make_device, monkeypatch):
    """The second socket watched d1 after the first query began: a frame stored in between is
    not in that query's snapshot, so the second socket must get one read after it asked."""
    owner = await sync_to_async(make_user)("owner")
    await sync_to_async(make_device)("d1", owner, seq=1)
    first_query_read, release_first_query = threading.Event(), threading.Event()

    def hold_the_first(number):
        if number == 1:
            first_query_read.set()
            assert release_first_query.wait(timeout=5)

    queries = counted(monkeypatch, hold_the_first)
    reader = SnapshotReader()
    first = asyncio.ensure_future(reader.read(["d1"]))
    assert await sync_to_async(first_query_read.wait, thread_sensitive=False)(5)
    await sync_to_async(Device.objects.filter(pk="d1").update, thread_sensitive=False)(seq=2)
    second = asyncio.ensure_future(reader.read(["d1"]))
    await asyncio.sleep(0)  # the second request is made, while the first query still runs
    release_first_query.set()

    assert [seq for _, seq, _ in await first] == [1]
    assert [seq for _, seq, _ in await second] == [2]
    assert queries == [{"d1"}, {"d1"}]


async def test_a_failed_query_fails_its_askers_and_the_next_query_runs(make_user, make_device, monkeypatch):
    owner = await sync_to_async(make_user)("owner")
    await sync_to_async(make_device)("d1", owner)

    def fail_the_first(number):
        if number == 1:
            raise RuntimeError("database away")

    counted(monkeypatch, fail_the_first)
    reader = SnapshotReader()
    results = await asyncio.gather(reader.read(["d1"]), reader.read(["d1"]), return_exceptions=True)
    assert [repr(result) for result in results] == ["RuntimeError('database away')"] * 2
    assert [device_id for device_id, _, _ in await reader.read(["d1"])] == ["d1"]
