"""The naive bridge's dashboards, as the Channels tutorial writes its chat: a websocket joins
its device's group on connect, and each group message becomes one websocket frame.

Served by its own daphne on the core Redis layer (bench.stack); bench.dashboards --watch naive
connects to it. Frames carry the reading in the shape bench.dashboards reads."""
import json
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
django_application = get_asgi_application()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402  (needs Django set up)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402


class NaiveDeviceConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        self.device_id = self.scope["url_route"]["kwargs"]["device_id"]
        await self.channel_layer.group_add(naive_group(self.device_id), self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard(naive_group(self.device_id), self.channel_name)

    async def device_reading(self, event):
        frame = {"type": "readings", "device": self.device_id, "items": [event["reading"]]}
        await self.send(text_data=json.dumps(frame))


def naive_group(device_id):
    return f"device.{device_id}"


application = ProtocolTypeRouter({
    "http": django_application,
    "websocket": URLRouter([path("ws/naive/<str:device_id>/", NaiveDeviceConsumer.as_asgi())]),
})
