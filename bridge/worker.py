"""channels' Worker with the MQTT bridge running in its event loop."""
import asyncio
import functools
import logging
import signal

from channels.worker import Worker

from hub import tasks

logger = logging.getLogger("bridge")

RETRY_SECONDS = 1.0


class BridgeWorker(Worker):
    """Listens on the bridge's named channels like `runworker`, runs the bridge beside them,
    and on SIGTERM or SIGINT stops the bridge cleanly (it flushes what it holds)."""

    def __init__(self, bridge, **kwargs):
        super().__init__(**kwargs)
        self.bridge = bridge
        self.failed = False  # the bridge ended by itself: runbridge then exits non-zero

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

    async def application_exception(self, exception, application_details):
        """A consumer on a bridge channel raised: asgiref has dropped its instance, and the next
        message makes a new one. Logged with its traceback and counted like a task crash."""
        name = f"channel_consumer {application_details['scope'].get('channel')}"
        tasks.crashes[name] += 1
        logger.error("%s crashed; the next message starts it again", name, exc_info=exception)

    async def serve(self, stop):
        """Runs the bridge and the channel listeners (each supervised: restarted if it crashes)
        until `stop` is set or the bridge ends by itself, which sets `failed`."""
        listeners = [
            tasks.start_supervised(f"channel_listener {channel}", functools.partial(self.listener, channel))
            for channel in self.channels
        ]
        bridge = asyncio.create_task(self.bridge.run(), name="bridge")
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait([bridge, stopping], return_when=asyncio.FIRST_COMPLETED)
        if bridge.done():
            self.failed = True
            logger.error("the bridge ended by itself; stopping", exc_info=bridge.exception())
        for listener in listeners:
            listener.cancel()
        await self.bridge.stop()
        await tasks.cancel_and_wait([*listeners, stopping])
        await asyncio.gather(bridge, return_exceptions=True)
