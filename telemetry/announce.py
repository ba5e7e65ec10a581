from channels.exceptions import ChannelFull

from telemetry import events


async def announce_command(channel_layer, command):
    """Shows a new command to every dashboard watching its device and asks the bridge to send it."""
    await channel_layer.group_send(events.LIVE_GROUP, events.command_event(command))
    try:
        await channel_layer.send(events.BRIDGE_COMMANDS_CHANNEL, events.command_dispatch_message(command.id))
    except ChannelFull:
        pass  # The bridge's sweep sends pending commands within a second.
