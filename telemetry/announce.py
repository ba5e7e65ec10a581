import logging

from channels.exceptions import ChannelFull

from devices.metrics import COMMANDS
from telemetry import events

logger = logging.getLogger("telemetry.commands")


async def announce_command(channel_layer, command):
    """Shows a new command to every dashboard watching its device and asks the bridge to send it.

    The command is stored already, so this never fails its creation: without the channel
    layer (Redis down), the bridge's sweep still sends it from the database within a second,
    and dashboards see it when they next load the device's commands."""
    COMMANDS.labels(command.status).inc()
    try:
        await channel_layer.group_send(events.LIVE_GROUP, events.command_event(command))
        await channel_layer.send(events.BRIDGE_COMMANDS_CHANNEL, events.command_dispatch_message(command.id))
    except ChannelFull:
        pass  # The bridge's sweep sends pending commands within a second.
    except Exception as exc:  # whatever the layer's client raises when Redis is away
        logger.warning(
            "could not announce command %s %r to %s, the bridge's sweep sends it: %s: %s",
            command.id, command.name, command.device_id, type(exc).__name__, exc,
        )
