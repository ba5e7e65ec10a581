"""Wires the protocols to the apps: HTTP to Django, websockets to telemetry's consumers,
and the bridge's named channel to its command relay."""
import os

from django.core.asgi import get_asgi_application

from hub.env import settings_or_exit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
settings_or_exit()
django_application = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up)
from channels.routing import ChannelNameRouter, ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from bridge.consumers import CommandRelayConsumer  # noqa: E402
from hub.origins import SameOriginValidator  # noqa: E402
from telemetry.admission import ConnectAdmission  # noqa: E402
from telemetry.backpressure import WriteGateMiddleware  # noqa: E402
from telemetry.events import BRIDGE_COMMANDS_CHANNEL  # noqa: E402
from telemetry.metrics import CountSockets  # noqa: E402
from telemetry.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_application,
        # Counted while open; then the write gate, which finds daphne's connection through
        # daphne's own `send`: nothing before it may wrap `send`.
        "websocket": CountSockets(
            WriteGateMiddleware(
                ConnectAdmission(
                    SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
                    settings.WS_MAX_CONNECTING,
                )
            )
        ),
        "channel": ChannelNameRouter({BRIDGE_COMMANDS_CHANNEL: CommandRelayConsumer.as_asgi()}),
    }
)
