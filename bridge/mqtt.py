"""An MQTT connection served by the asyncio event loop.

paho-mqtt's socket is watched by the loop (add_reader/add_writer), so messages arrive on the
loop thread with no hand-over between threads, and every callback may touch asyncio state.
The connection reconnects by itself with jittered exponential backoff and resubscribes.
"""
import asyncio
import logging
import random
import struct
from dataclasses import dataclass, replace
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from hub.tasks import start_supervised

logger = logging.getLogger(__name__)

DEFAULT_URL = "mqtt://127.0.0.1:1883"
# A PUBACK packet: its type, its remaining length (2) and the packet id.
PUBACK = struct.Struct("!BBH")


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool

    def __str__(self):
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"

    def without_login(self):
        return replace(self, username=None, password=None)

    def with_login(self, username, password):
        return replace(self, username=username, password=password)


def parse_mqtt_url(url):
    """mqtt://user:password@host:port, or mqtts:// for TLS; the password is never logged."""
    parts = urlsplit(url or DEFAULT_URL)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError(f"not an MQTT URL (mqtt://user:password@host:port): {url!r}")
    tls = parts.scheme == "mqtts"
    return BrokerAddress(
        host=parts.hostname,
        port=parts.port or (8883 if tls else 1883),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=tls,
    )


def backoff_delay(attempt, base=0.5, cap=30.0):
    """Full-jitter exponential backoff, so a fleet does not reconnect in step."""
    return random.uniform(base / 2, min(cap, base * 2**attempt))


class BufferedClient(mqtt.Client):
    """A paho client that reads its socket in chunks, and takes the PUBLISH packets in them itself.

    paho reads each packet with three or four recv() calls of a few bytes, and loop_read()
    reads one packet: at 10,000 readings/s that is 40,000 system calls and 10,000 turns of
    the event loop a second. `loop_read_all()` reads one chunk from the socket and handles
    every whole packet in it; paho's small reads are served from memory. One chunk a turn
    keeps the loop turning (flushes, acknowledgements) while the broker sends a backlog.

    A whole PUBLISH at QoS 0 or 1 in the chunk (all the bridge receives: it subscribes at QoS 1)
    goes straight to `on_message`, without paho's packet state, locks and per-topic callback
    lookup: 2.5 us a message instead of 8.3 (docs/performance.md). paho handles every other
    packet, and any PUBLISH it would refuse as malformed.

    It overrides paho's private `_sock_recv` and reads its `_in_packet`, so requirements.txt
    pins paho-mqtt exactly.
    """

    read_size = 16384

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._read_buffer = b""
        self._read_position = 0
        self._may_recv = True
        self.reading_paused = False

    def forget_buffered(self):
        """Drops what was read from a socket that is gone."""
        self._read_buffer, self._read_position, self._may_recv = b"", 0, True

    def loop_read_all(self):
        """Reads a chunk from the socket and handles the packets it completes; the rest of a
        packet cut at the chunk's end waits for the next turn. Once reading is paused it stops
        after the packet in hand: the rest of the chunk waits here for `reading_paused` to clear."""
        self._may_recv = True
        while not self.reading_paused:
            if self._in_packet["command"] == 0 and self._take_publish():
                continue
            if self.loop_read() != mqtt.MQTT_ERR_SUCCESS or self._read_position >= len(self._read_buffer):
                break

    def _take_publish(self):
        """Hands the whole PUBLISH at QoS 0 or 1 that starts at the read position, if there is
        one, to on_message; False, leaving it to paho, for anything else."""
        buffer, start = self._read_buffer, self._read_position
        end = len(buffer)
        if end - start < 2 or buffer[start] & 0xF6 not in (0x30, 0x32):  # PUBLISH, QoS 0 or 1
            return False
        flags = buffer[start]
        qos = (flags >> 1) & 1
        length, shift, position = 0, 0, start + 1
        while True:  # the remaining length: 7 bits a byte, at most 4 bytes
            if position >= end or shift > 21:
                return False
            byte = buffer[position]
            position += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        packet_end = position + length
        if packet_end > end or length < 2:
            return False
        topic_end = position + 2 + (buffer[position] << 8 | buffer[position + 1])
        payload_start = topic_end + 2 * qos  # a packet id follows the topic at QoS 1
        if payload_start > packet_end:
            return False
        message = mqtt.MQTTMessage(
            mid=buffer[topic_end] << 8 | buffer[topic_end + 1] if qos else 0, topic=buffer[position + 2:topic_end]
        )
        message.qos, message.retain, message.dup = qos, bool(flags & 0x01), bool(flags & 0x08)
        message.payload = buffer[payload_start:packet_end]
        message.timestamp = mqtt.time_func()
        self._read_position = packet_end
        with self._msgtime_mutex:
            self._last_bytes_received = message.timestamp
        self._on_message(self, self._userdata, message)
        return True

    def ack_all(self, mids):
        """Acknowledges QoS 1 messages with one queued write of their PUBACKs: paho queues, and
        then writes, each acknowledgement on its own."""
        if mids:
            self._packet_queue(mqtt.PUBACK, b"".join(PUBACK.pack(mqtt.PUBACK, 2, mid) for mid in mids), 0, 0)

    def loop_misc(self):
        """paho's keepalive, but while reading is paused the broker's PINGRESP waits unread behind
        the messages it sent before it: paho would take the connection for dead and reconnect
        (and the broker would send the backlog again). So while paused the client keeps pinging,
        which keeps the broker from dropping it, and waits for no answer; a broker that is gone
        shows once reading resumes, or when a write fails."""
        if self.reading_paused:
            with self._msgtime_mutex:
                self._last_bytes_received = mqtt.time_func()
            self._ping_t = 0
        return super().loop_misc()

    def _sock_recv(self, bufsize):
        if self._read_position >= len(self._read_buffer):
            if not self._may_recv:
                raise BlockingIOError  # this turn's chunk is used up: paho keeps the partial packet
            self._may_recv = False
            data = super()._sock_recv(self.read_size)
            if len(data) <= bufsize:
                return data
            self._read_buffer, self._read_position = data, 0
        start = self._read_position
        self._read_position = min(start + bufsize, len(self._read_buffer))
        return self._read_buffer[start:self._read_position]


class MqttConnection:
    """One MQTT 3.1.1 client kept connected until `disconnect()`; with `reconnect=False`, connected
    once: `run()` returns when that connection ends or cannot be made.

    `on_message(message)` and `on_connected(session_present)` run on the event loop thread.
    """

    keepalive = 30

    def __init__(
        self,
        address,
        client_id,
        *,
        clean_session=True,
        manual_ack=False,
        subscriptions=(),
        on_message=None,
        on_connected=None,
        will=None,
        reconnect=True,
    ):
        self.address = address
        self.client_id = client_id
        self.subscriptions = list(subscriptions)
        self.on_message = on_message
        self.on_connected = on_connected
        self.reconnect = reconnect
        self.refused = None  # the broker's reason, when it refused the last connection
        self.connected = asyncio.Event()
        self._lost = asyncio.Event()
        self._stopping = False
        self._was_connected = False
        self._loop = asyncio.get_running_loop()

        client = BufferedClient(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=mqtt.MQTTv311,
            manual_ack=manual_ack,
        )
        client.suppress_exceptions = True
        client.connect_timeout = 5.0
        if address.username:
            client.username_pw_set(address.username, address.password)
        if address.tls:
            client.tls_set()
        if will is not None:
            topic, payload = will
            client.will_set(topic, payload, qos=1, retain=True)
        client.on_socket_open = self._watch_socket
        client.on_socket_close = self._unwatch_socket
        client.on_socket_register_write = self._watch_writes
        client.on_socket_unregister_write = self._unwatch_writes
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_message
        self.client = client

    async def run(self):
        """Connects, and reconnects after every loss, until `disconnect()`."""
        attempt = 0
        while not self._stopping:
            self._lost.clear()
            try:
                self.client.connect(self.address.host, self.address.port, keepalive=self.keepalive)
            except OSError as exc:
                if not self.reconnect:
                    logger.warning("%s cannot reach %s: %s", self.client_id, self.address, exc)
                    break
                delay = backoff_delay(attempt)
                attempt += 1
                logger.warning("%s cannot reach %s (%s); retrying in %.1f s", self.client_id, self.address, exc, delay)
                await asyncio.sleep(delay)
                continue
            housekeeping = start_supervised("mqtt_keepalive", self._housekeeping)
            await self._lost.wait()
            housekeeping.cancel()
            if self._stopping or not self.reconnect:
                break
            attempt = 0 if self._was_connected else attempt + 1
            delay = backoff_delay(attempt)
            logger.warning("%s lost %s; reconnecting in %.1f s", self.client_id, self.address, delay)
            await asyncio.sleep(delay)

    async def disconnect(self, timeout=5.0):
        """Sends what is queued, says goodbye (no last will), and stops reconnecting."""
        self._stopping = True
        if self.connected.is_set():
            self.client.disconnect()
            try:
                await asyncio.wait_for(self._lost.wait(), timeout)
            except TimeoutError:
                logger.warning("%s: the broker did not close the connection in %s s", self.client_id, timeout)
        self._lost.set()

    def publish(self, topic, payload, qos=0, retain=False):
        """Queues a message; False if there is no connection to send it on."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def ack(self, mid, qos):
        self.client.ack(mid, qos)

    def ack_all(self, acks):
        """Acknowledges messages given as (mid, qos) in one write. Nothing arrives at QoS 2: the
        bridge subscribes at QoS 1."""
        self.client.ack_all([mid for mid, qos in acks if qos == 1])

    @property
    def reading_paused(self):
        return self.client.reading_paused

    def pause_reading(self):
        """Stops taking messages from the socket (after the one in hand): what the broker sends
        waits in the socket's buffers, then in the broker's queue for this session."""
        self.client.reading_paused = True
        sock = self.client.socket()
        if sock is not None:
            self._loop.remove_reader(sock)

    def resume_reading(self):
        self.client.reading_paused = False
        sock = self.client.socket()
        if sock is not None:
            self._loop.add_reader(sock, self._read)
            self._loop.call_soon(self._read)  # packets already read into the buffer, if any

    def _read(self):
        self.client.loop_read_all()
        sock = self.client.socket()
        if self.client.reading_paused and sock is not None:
            # Paused while the socket was new: its CONNACK was read, the rest waits.
            self._loop.remove_reader(sock)

    async def _housekeeping(self):
        """Keepalive pings and timeouts: paho's loop_misc, once a second."""
        while True:
            await asyncio.sleep(1)
            self.client.loop_misc()

    def _watch_socket(self, client, userdata, sock):
        self._was_connected = False
        client.forget_buffered()
        self._loop.add_reader(sock, self._read)

    def _unwatch_socket(self, client, userdata, sock):
        self._loop.remove_reader(sock)
        self._loop.remove_writer(sock)

    def _watch_writes(self, client, userdata, sock):
        self._loop.add_writer(sock, client.loop_write)

    def _unwatch_writes(self, client, userdata, sock):
        self._loop.remove_writer(sock)

    def _handle_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self.refused = reason_code
            hint = " (a login new to the registry reaches the broker within about two seconds)" if reason_code.getName() == "Not authorized" else ""
            logger.error("%s: %s refused the connection: %s%s", self.client_id, self.address, reason_code, hint)
            return
        self._was_connected = True
        if self.subscriptions:
            client.subscribe([(topic, qos) for topic, qos in self.subscriptions])
        self.connected.set()
        if self.on_connected is not None:
            self.on_connected(flags.session_present)

    def _handle_disconnect(self, client, userdata, flags, reason_code, properties):
        self.connected.clear()
        self._lost.set()

    def _handle_message(self, client, userdata, message):
        try:
            self.on_message(message)
        except Exception:
            logger.exception("%s: failed to handle a message on %s", self.client_id, message.topic)
