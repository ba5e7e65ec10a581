"""Snapshots: what a socket shows of a device before its live frames (status, latest values, seq)."""
import asyncio

import orjson
from channels.db import database_sync_to_async

from devices.models import Device
from telemetry.events import snapshot_frame


def device_snapshots(device_ids):
    """Snapshot frames of the given devices."""
    devices = Device.objects.filter(pk__in=device_ids).prefetch_related("latest_values")
    return [snapshot_frame(device, device.latest_values.all()) for device in devices]


class SnapshotReader:
    """Reads snapshots for all the sockets of one process, one query at a time.

    Sockets that ask while a query runs wait for the next one, which reads every device they
    asked for together, and each snapshot is encoded once for all of them. A burst of 200 fleet
    dashboards, each asking for the same 1,000 devices, costs a few queries instead of 200, so
    the sign-in lookups of the sockets still connecting do not queue behind them in the one
    database thread.

    A request never joins a query that has already started: the socket watches its devices
    before it asks, so every frame newer than its snapshot reaches it.
    """

    def __init__(self):
        self._lock = asyncio.Lock()
        self._next = None  # (device ids, future) of the query that has not started yet
        self._queries = set()  # tasks of the queries under way: the loop keeps only weak references

    async def read(self, device_ids):
        """[(device id, seq, encoded snapshot frame)] of those of `device_ids` that exist."""
        if self._next is None:
            self._next = (set(), asyncio.get_running_loop().create_future())
            # Retrieved here, so a failure that every asker gave up on is not logged as unseen.
            self._next[1].add_done_callback(lambda done: done.cancelled() or done.exception())
            query = asyncio.ensure_future(self._query(self._next))
            self._queries.add(query)
            query.add_done_callback(self._queries.discard)
        wanted, result = self._next
        wanted.update(device_ids)
        snapshots = await asyncio.shield(result)
        return [snapshots[device_id] for device_id in device_ids if device_id in snapshots]

    async def _query(self, request):
        wanted, result = request
        async with self._lock:
            self._next = None
            try:
                frames = await database_sync_to_async(device_snapshots)(wanted)
            except Exception as error:
                result.set_exception(error)
                return
            result.set_result({
                frame["device"]: (frame["device"], frame["seq"], orjson.dumps(frame).decode()) for frame in frames
            })
