"""A web process sets up a bounded number of dashboard sockets at once and refuses the rest at
once, so a reconnect storm settles instead of timing out."""
import asyncio
import logging

from channels.testing import WebsocketCommunicator

from hub import asgi
from telemetry.admission import ConnectAdmission
from telemetry.backpressure import WriteGateMiddleware
from telemetry.metrics import CountSockets
from tests.manual_clock import Clock


class SlowSignIn:
    """An ASGI app that accepts a socket only once the test lets it: a sign-in still running."""

    def __init__(self):
        self.started = 0
        self.release = asyncio.Event()

    async def __call__(self, scope, receive, send):
        assert (await receive())["type"] == "websocket.connect"
        self.started += 1
        await self.release.wait()
        await send({"type": "websocket.accept"})
        while (await receive())["type"] != "websocket.disconnect":
            pass


async def wait_for(condition, timeout=2):
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_past_the_limit_a_socket_is_refused_at_once_before_the_application_sees_it(caplog):
    inner = SlowSignIn()
    admission = ConnectAdmission(inner, limit=2, clock=Clock())
    setting_up = [WebsocketCommunicator(admission, "/ws/fleet/") for _ in range(2)]
    connects = [asyncio.ensure_future(communicator.connect(timeout=5)) for communicator in setting_up]
    await wait_for(lambda: inner.started == 2)

    with caplog.at_level(logging.WARNING, logger="telemetry.admission"):
        refused = WebsocketCommunicator(admission, "/ws/fleet/")
        connected, _ = await refused.connect(timeout=2)
        assert connected is False  # closed before accept: daphne answers HTTP 403
    assert inner.started == 2
    assert "1 connects refused, 2 being set up already" in caplog.text

    inner.release.set()
    assert [await connect for connect in connects] == [(True, None), (True, None)]
    assert admission.connecting == 0
    let_in = WebsocketCommunicator(admission, "/ws/fleet/")
    assert await let_in.connect(timeout=2) == (True, None)
    for communicator in (*setting_up, let_in):
        await communicator.disconnect()


async def test_a_socket_the_application_refuses_or_drops_while_setting_up_frees_its_place():
    async def refuse_the_first_and_fail_the_second(scope, receive, send):
        await receive()
        if scope["path"] == "/refused/":
            await send({"type": "websocket.close", "code": 4401})
        else:
            raise RuntimeError("the sign-in lookup failed")

    admission = ConnectAdmission(refuse_the_first_and_fail_the_second, limit=1)
    assert await WebsocketCommunicator(admission, "/refused/").connect(timeout=2) == (False, 4401)
    assert admission.connecting == 0
    failing = WebsocketCommunicator(admission, "/failing/")
    try:
        await failing.connect(timeout=2)
    except RuntimeError:
        pass
    assert admission.connecting == 0


async def test_two_refusals_ten_seconds_apart_are_reported_each_and_those_between_counted():
    clock = Clock()
    inner = SlowSignIn()
    admission = ConnectAdmission(inner, limit=1, clock=clock)
    holding = WebsocketCommunicator(admission, "/ws/fleet/")
    held = asyncio.ensure_future(holding.connect(timeout=5))
    await wait_for(lambda: inner.started == 1)
    reports = []
    handler = logging.Handler()
    handler.emit = lambda record: reports.append(record.getMessage())
    logging.getLogger("telemetry.admission").addHandler(handler)
    try:
        for seconds in (0, 1, 2, 10):
            clock.now += seconds
            assert (await WebsocketCommunicator(admission, "/ws/fleet/").connect(timeout=2))[0] is False
    finally:
        logging.getLogger("telemetry.admission").removeHandler(handler)
    assert [report.split(",")[0] for report in reports] == ["websockets: 1 connects refused", "websockets: 3 connects refused"]
    inner.release.set()
    await held
    await holding.disconnect()


def test_the_hubs_websockets_pass_through_admission_with_the_configured_limit_inside_the_write_gate(settings):
    """Admission wraps `send`, and the write gate finds daphne's connection through daphne's own
    `send` (telemetry.backpressure): the gate must come first, but for the count of open
    sockets, which leaves `send` alone."""
    counted = asgi.application.application_mapping["websocket"]
    assert isinstance(counted, CountSockets)
    websocket_app = counted.app
    assert isinstance(websocket_app, WriteGateMiddleware)
    assert isinstance(websocket_app.inner, ConnectAdmission)
    assert websocket_app.inner.limit == settings.WS_MAX_CONNECTING == 32
