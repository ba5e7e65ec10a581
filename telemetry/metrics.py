"""The live side's Prometheus metrics in a web process (served at /metrics, hub/metrics.py)."""
from prometheus_client import Counter, Gauge

SOCKETS_OPEN = Gauge("telehub_ws_sockets_open", "Websockets open on this process, signed in or not yet.")
FRAMES_SENT = Counter("telehub_ws_frames_sent", "Live frames sent to dashboards (snapshots not counted).")
FRAMES_DROPPED = Counter(
    "telehub_ws_frames_dropped", "Live frames dropped for slow dashboards or too large to send (each told so)."
)
SOCKETS_ENDED = Counter(
    "telehub_ws_sockets_ended", "Websockets the server closed, by close code: 1008 over the inbound rate limit; "
    "found by the re-check while open, 4401 signed out or deactivated, 4403 a device socket's device no longer "
    "visible.", ["code"]
)
RELAY_MESSAGES = Counter(
    "telehub_relay_messages", "Messages this process's live relay received from the channel layer, by type.", ["type"]
)


class CountSockets:
    """ASGI middleware: counts the websockets open, from their start to their end."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        with SOCKETS_OPEN.track_inprogress():
            return await self.app(scope, receive, send)
