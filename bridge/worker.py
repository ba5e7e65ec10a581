"""channels' Worker with the MQTT bridge running in its event loop."""
import asyncio
import logging
import signal

from channels.worker import Worker

logger = logging.getLogger("bridge")

RETRY_SECONDS = 1.0


class BridgeWorker(Worker):
    """Listens on the bridge's named channels like `runworker`, runs the bridge beside them,
    and on SIGTERM or SIGINT stops the bridge cleanly (it flushes what it holds)."""

    def __init__(self, bridge, **kwargs):
        super().__init__(**kwargs)
        self.bridge = bridge

    def get_or_create_application_instance(self, scope_id, scope):
        # Consumers on the bridge's channels reach the bridge through their scope.
        scope["bridge"] = self.bridge
        return super().get_or_create_application_instance(scope_id, scope)

    async def listener(self, channel):
        """Listens like channels' Worker, but outlives a channel layer outage (a Redis restart):
        the bridge's work does not depend on the layer, and commands whose dispatch request is
        lost are sent by the bridge's sweep anyway."""
        failing = False
        while True:
            if asyncio.current_task().cancelling():
                # A cancellation redis-py swallowed (or turned into an error) in receive().
                raise asyncio.CancelledError
            try:
                message = await self.channel_layer.receive(channel)
            except Exception as exc:
                if not failing:
                    logger.error("cannot receive from channel %s, retrying every %s s: %r", channel, RETRY_SECONDS, exc)
                    failing = True
                await asyncio.sleep(RETRY_SECONDS)
                continue
            if failing:
                logger.info("receiving from channel %s again", channel)
                failing = False
            if not message.get("type"):
                logger.warning("ignored a message with no type on channel %s", channel)
                continue
            scope = {"type": "channel", "channel": channel}
            await self.get_or_create_application_instance(channel, scope).put(message)

    async def handle(self):
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await self.serve(stop)

    async def serve(self, stop):
        """Runs the bridge and the channel listeners until `stop` is set or either fails."""
        running = [
            asyncio.create_task(self.bridge.run(), name="bridge"),
            asyncio.create_task(super().handle(), name="channel listeners"),
        ]
        stopping = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([*running, stopping], return_when=asyncio.FIRST_COMPLETED)
        for task in done - {stopping}:
            if task.exception() is not None:
                logger.error("%s failed", task.get_name(), exc_info=task.exception())
        running[1].cancel()
        await self.bridge.stop()
        stopping.cancel()
        await asyncio.gather(*running, stopping, return_exceptions=True)
