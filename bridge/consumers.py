from channels.consumer import AsyncConsumer


class CommandRelayConsumer(AsyncConsumer):
    """Receives, on the bridge's named channel, the commands dashboards created, and has the
    bridge send them to their devices."""

    async def command_dispatch(self, message):
        await self.scope["bridge"].dispatch_command(message["id"])
