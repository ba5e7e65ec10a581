"""How many dashboard sockets a web process sets up at once.

Setting up a socket costs its session and user lookups, which run one at a time on the
process's database thread, on top of the handshake. When more dashboards arrive than the
process sets up within daphne's websocket connect timeout (5 s), as when a restart sends every
dashboard back at once, the lookups of sockets whose clients have already given up still run,
so the process spends itself on sockets nobody waits for and never catches up: after a
minute, 44 and 242 of 2,000 reconnecting dashboards were open (docs/performance.md).

Past `limit` sockets being set up, a new one is refused at once, before any lookup (daphne
answers HTTP 403), and the pages try again later with their backoff. The sockets let in are
set up well within the timeout.
"""
import logging
import time

logger = logging.getLogger("telemetry.admission")

REPORT_EVERY_SECONDS = 10


class ConnectAdmission:
    """ASGI middleware for websockets: at most `limit` sockets between the client's connect and
    the application's accept (or refusal) at a time."""

    def __init__(self, inner, limit, clock=time.monotonic):
        self.inner = inner
        self.limit = limit
        self.clock = clock
        self.connecting = 0
        self.refused = 0  # since the last report
        self.reported = None

    async def __call__(self, scope, receive, send):
        if self.connecting >= self.limit:
            await self._refuse(receive, send)
            return
        self.connecting += 1
        settled = False

        async def send_and_settle(message):
            nonlocal settled
            if not settled and message["type"] in ("websocket.accept", "websocket.close"):
                settled = True
                self.connecting -= 1
            await send(message)

        try:
            await self.inner(scope, receive, send_and_settle)
        finally:
            if not settled:
                self.connecting -= 1

    async def _refuse(self, receive, send):
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.close"})
        self.refused += 1
        now = self.clock()
        if self.reported is None or now - self.reported >= REPORT_EVERY_SECONDS:
            logger.warning("websockets: %d connects refused, %d being set up already (HUB_WS_MAX_CONNECTING); "
                           "clients try again later", self.refused, self.limit)
            self.refused, self.reported = 0, now
