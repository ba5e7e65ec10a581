from django.urls import re_path

from devices.models import DEVICE_ID_RE
from telemetry.consumers import DeviceConsumer, FleetConsumer

websocket_urlpatterns = [
    re_path(rf"^ws/devices/(?P<device_id>{DEVICE_ID_RE})/$", DeviceConsumer.as_asgi()),
    re_path(r"^ws/fleet/$", FleetConsumer.as_asgi()),
]
