"""The bench's dashboard clients: how they count what their sockets receive (bench.tally), and
how they connect when the hub refuses (bench.dashboards). The fast path reads the hub's frames
as text, so these tests build messages with the hub's own code: they fail if its frames change shape."""
import asyncio
import json
from argparse import Namespace
from http import HTTPStatus

import orjson
import pytest
from websockets.asyncio.server import serve

from bench.dashboards import Dashboards, run
from bench.stats import CEILING_MS, Histogram
from bench.tally import SocketReader, Tally, readings_frames
from bridge.protocol import Sample
from telemetry.consumers import DashboardConsumer
from telemetry.events import readings_frame

NOW = 1_800_000_000.0


class MessageRecorder(DashboardConsumer):
    """The hub's consumer with its websocket replaced by a list: what send_frames would send."""

    def __init__(self):
        self.sent = []

    async def send(self, text_data=None, bytes_data=None, close=False):
        self.sent.append(text_data)


def hub_messages(texts):
    recorder = MessageRecorder()
    asyncio.run(recorder.send_frames(texts))
    return recorder.sent


def readings(device, seq, *published):
    """A readings frame as the bridge makes it, one sample per publish time (None: no `pub`)."""
    samples = [Sample(1000 + n, {"temp": 20.5, "hum": 40} | ({} if pub is None else {"pub": pub})) for n, pub in enumerate(published)]
    return readings_frame(device, seq, samples)[2]


def counted(messages, parse_whole=False):
    tally = Tally()
    reader = SocketReader(tally)
    snapshots = 0
    for text in messages:
        snapshots += reader._take_parsed(orjson.loads(text), NOW) if parse_whole else reader.take(text, NOW)
    return {**tally.as_dict(), "snapshots": snapshots, "seqs": reader.seqs}


def test_the_hubs_readings_messages_are_read_as_text_alone_and_batched():
    frames = [readings("dev-a", 1, NOW - 0.01), readings("dev-b", 7, NOW - 0.02, NOW - 0.03)]
    batch, = hub_messages(frames)
    lone, = hub_messages(frames[:1])
    assert readings_frames(batch) == (0, [("dev-a", "1"), ("dev-b", "7")])
    assert readings_frames(lone) == (0, [("dev-a", "1")])


def dropped_frame(**counts):
    """As DashboardConsumer._send_forever makes it, first in the batch it sends."""
    return orjson.dumps({"type": "dropped", "devices": counts}).decode()


def test_frames_dropped_before_the_readings_are_read_as_text_too():
    batch, = hub_messages([dropped_frame(**{"dev-a": 3, "dev-b": 2}), readings("dev-a", 5, NOW - 0.01)])
    assert readings_frames(batch) == (5, [("dev-a", "5")])
    assert counted([batch]) == counted([batch], parse_whole=True)


def test_reading_as_text_counts_what_parsing_whole_counts():
    published = [NOW - 0.0123, NOW - 0.5, NOW - 1.5, NOW - 0.004, NOW - 0.0001, NOW + 0.2]
    frames = [
        readings("dev-a", 1, published[0]), readings("dev-b", 5, published[1], None, published[2]),
        readings("dev-a", 2, published[3]), readings("dev-a", 4, published[4]),  # a gap: 3 is missing
        readings("dev-b", 9, published[5]),  # a gap, and a clock ahead: counted in the first bin
    ]
    messages = hub_messages(frames[:2]) + hub_messages(frames[2:4]) + hub_messages(frames[4:])
    assert all(readings_frames(text) is not None for text in messages)
    fast, whole = counted(messages), counted(messages, parse_whole=True)
    assert fast == whole
    assert fast["readings"] == 6 and fast["gaps"] == 2 and fast["seqs"] == {"dev-a": 4, "dev-b": 9}
    one_by_one = Histogram()
    for moment in published:
        one_by_one.add((NOW - moment) * 1000)
    assert fast["latency_bins"] == one_by_one.bins and one_by_one.percentile(1.0) == 1500.1


def test_other_frames_are_parsed_whole_dropped_counted_and_snapshots_reset_the_seq():
    snapshot = orjson.dumps({"type": "snapshot", "device": "dev-a", "seq": 10, "latest": {"pub": {"ts": 1, "value": 2.0}}}).decode()
    dropped = dropped_frame(**{"dev-a": 3, "dev-b": 2})
    messages = hub_messages([readings("dev-a", 1, NOW - 0.01), snapshot]) + hub_messages([dropped, snapshot, readings("dev-a", 11, NOW - 0.01)])
    assert all(readings_frames(text) is None for text in messages)
    figures = counted(messages)
    assert figures["snapshots"] == 2 and figures["dropped"] == 5 and figures["readings"] == 2
    assert figures["gaps"] == 0 and figures["seqs"] == {"dev-a": 11}


def test_frames_of_another_shape_are_parsed_whole():
    # As the naive bridge's consumer (bench/naive_asgi.py) writes them: json.dumps, no seq.
    naive = json.dumps({"type": "readings", "device": "dev-a", "items": [{"ts": 1, "values": {"temp": 1.0, "pub": NOW - 0.01}}]})
    assert readings_frames(naive) is None
    figures = counted([naive, naive])
    assert figures["readings"] == 2 and figures["gaps"] == 0 and figures["seqs"] == {}


def test_latencies_counted_in_bulk_are_clamped_and_merge_as_json():
    histogram = Histogram()
    assert histogram.add_all([-3.0, 0.05, 0.25, 0.25, CEILING_MS * 2]) == 5
    assert histogram.add_all([]) == 0
    assert histogram.bins == {0: 2, 2: 2, int(CEILING_MS * 10): 1}
    shipped = Histogram(json.loads(json.dumps(histogram.bins))).merge(histogram)
    assert shipped.count == 10 and shipped.percentile(0.5) == 0.3


def client_args(port, **overrides):
    return Namespace(**{
        "url": f"ws://127.0.0.1:{port}", "cookie": "sessionid=x", "sockets": 1, "watch": "idle", "devices": 1, "first": 0,
        "seconds": 0, "ramp": 0, "connect_within": 30.0, **overrides,
    })


async def refusing_server(refusals):
    """A websocket server that answers the first `refusals` handshakes 503, then accepts."""
    attempts = []

    def process_request(connection, request):
        attempts.append(request.path)
        if len(attempts) <= refusals:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "busy\n")

    async def hold(socket):
        await socket.wait_closed()

    return await serve(hold, "127.0.0.1", 0, process_request=process_request), attempts


@pytest.mark.parametrize("refusals", [0, 2])
def test_a_refused_connect_is_retried_with_backoff_and_counted(refusals):
    async def scenario():
        server, attempts = await refusing_server(refusals)
        async with server:
            result = await run(client_args(server.sockets[0].getsockname()[1]))
        return result, attempts

    result, attempts = asyncio.run(scenario())
    assert attempts == ["/ws/fleet/"] * (refusals + 1)
    assert result["opened"] == 1 and result["failed_sockets"] == 0 and result["closed_sockets"] == 0
    assert result["connect_attempts_refused"] == refusals and result["open_seconds"] is not None


def test_a_socket_refused_until_the_deadline_counts_as_failed_not_open():
    async def scenario():
        server, attempts = await refusing_server(refusals=1_000)
        async with server:
            dashboards = Dashboards(client_args(server.sockets[0].getsockname()[1], connect_within=0.1))
            await dashboards.watch(0)
        return dashboards.as_dict(), attempts

    result, attempts = asyncio.run(scenario())
    assert len(attempts) == 1 and result["connect_attempts_refused"] == 1
    assert result["failed_sockets"] == 1 and result["opened"] == 0 and result["open_seconds"] is None
