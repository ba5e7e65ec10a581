"""Back-pressure from a dashboard's connection to its consumer, under daphne.

daphne writes each websocket message into Twisted's transport, which buffers without limit:
a dashboard that stops reading would have the server keep everything sent to it. Twisted
tells the transport's producer when its write buffer passes 64 KiB (pauseProducing) and when
it has drained (resumeProducing). WriteGate is that producer: the consumer waits on it before
sending live frames, which meanwhile wait in its bounded outbox, where the oldest give way
and are counted (telemetry.outbox).
"""
import asyncio
import functools


class WriteGate:
    """Open while the client takes what is sent to it; a Twisted push producer."""

    def __init__(self):
        self.open = asyncio.Event()
        self.open.set()

    def pauseProducing(self):
        self.open.clear()

    def resumeProducing(self):
        self.open.set()

    def stopProducing(self):
        self.open.set()  # the connection is gone: let the sender run into its end


class WriteGateMiddleware:
    """Puts a WriteGate for the socket's connection in the scope as `write_gate`, under daphne
    (elsewhere there is none, and consumers send without waiting); and daphne's connection
    itself as `daphne_connection`, for the one thing ASGI cannot get through daphne (see
    close_with_policy_violation())."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        connection = daphne_connection(send)
        if connection is not None:
            transport = connection.transport
            gate = WriteGate()
            # The upgraded connection's producer is still daphne's HTTP channel, which only
            # pauses reading from the client when writes back up: the gate takes its place.
            transport.unregisterProducer()
            transport.registerProducer(gate, True)
            scope = {**scope, "write_gate": gate, "daphne_connection": connection}
        return await self.inner(scope, receive, send)


def daphne_connection(send):
    """The websocket connection (an autobahn protocol) behind daphne's `send`, which is
    functools.partial(server.handle_reply, protocol); None under any other server."""
    if not isinstance(send, functools.partial) or not send.args:
        return None
    connection = send.args[0]
    return connection if hasattr(getattr(connection, "transport", None), "registerProducer") else None


def close_with_policy_violation(connection, reason):
    """Closes a daphne websocket with 1008, which autobahn refuses from an application's
    websocket.close (only 1000 and 3000-4999 there): the close frame is sent as autobahn
    sends its own, and the connection then ends as any closed one does."""
    connection.sendCloseFrame(code=1008, reasonUtf8=reason.encode(), isReply=False)
