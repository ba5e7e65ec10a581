"""Alarm frames to the dashboards that watch the alarm's device.

An alarm frame takes the road of status and command frames (telemetry.events): one message to
the live group, which each web process's relay hands to the sockets watching the device, and
only to them (a socket watches only devices its user may see). In the bridge, frames go through
its LiveSender, beside its work; elsewhere (the API's acknowledge and clear) straight to the
channel layer (from a sync view under daphne, async_to_sync runs the send on daphne's own loop
and its layer connections). Like every live frame, at most once: a dashboard that missed one reads the API.
"""
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from alarms.serializers import alarm_json
from telemetry import events

logger = logging.getLogger("alarms")

_publish = None  # set by a process that sends live events its own way (the bridge)


def publish_with(publish):
    """From now on, this process's alarm events go to `publish(event)`, which must be safe to
    call from any thread; None: straight to the channel layer again."""
    global _publish
    _publish = publish


def alarm_event(alarm):
    return events.device_event(alarm.device_id, {"type": "alarm", "alarm": alarm_json(alarm)})


def announce(alarm):
    """Sends `alarm`'s new state to the sockets watching its device. Never raises: the change
    is stored already, and a lost frame is lost like any live frame."""
    try:
        event = alarm_event(alarm)
        if _publish is not None:
            _publish(event)
        else:
            async_to_sync(get_channel_layer().group_send)(events.LIVE_GROUP, event)
    except Exception as exc:  # whatever the layer's client raises when Redis is away
        logger.warning("could not announce alarm %s on %s: %s: %s", alarm.pk, alarm.device_id, type(exc).__name__, exc)
