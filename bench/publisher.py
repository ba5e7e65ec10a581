"""A load generator: publishes 3-value readings for many devices at a fixed rate, QoS 1.

Each reading carries its publish time (`pub`, epoch seconds) so receivers can measure latency.
One MQTT connection publishes for all of its devices: the broker and the hub see the same
topics and payloads as from separate devices, at a fraction of the generator's cost.

It speaks just enough MQTT 3.1.1 over a plain socket to publish: a full client (paho) spent
about 100 µs of CPU a reading, so at 10,000/s the generators took a core the hub needed.
Readings due in the same tick go out in one send(), and acknowledgements are read 64 KiB at a time.

python -m bench.publisher --url mqtt://127.0.0.1:1883 --first 0 --devices 100 --rate 1000 --seconds 10
Prints {"published": N, "started": t, "finished": t} as JSON."""
import argparse
import json
import random
import select
import socket
import time

import orjson

from bench.prepare import device_ids
from bridge.mqtt import parse_mqtt_url

# Readings due within one tick are written together: the fewer sends, the cheaper a reading.
TICK = 0.005
# At most this many readings in one send(), when the generator is behind its schedule.
MAX_BATCH = 500
KEEPALIVE = 60  # seconds; a PINGREQ goes out after half of it with nothing written
CONNECT_TIMEOUT = 10
ACK_TIMEOUT = 60  # after the last publish, for the broker to acknowledge every reading
READ_CHUNK = 65536

CONNACK, PUBACK, PINGRESP = 2, 4, 13  # control packet types, MQTT 3.1.1 section 2.2.1
PINGREQ = b"\xc0\x00"  # section 3.12
DISCONNECT = b"\xe0\x00"  # section 3.14
REFUSALS = {  # CONNACK return codes, section 3.2.2.3
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


def remaining_length(length):
    """The fixed header's Remaining Length (section 2.2.3): 7 bits a byte, low bits first, the
    high bit set on every byte but the last."""
    encoded = bytearray()
    while True:
        length, digit = divmod(length, 128)
        encoded.append(digit | 0x80 if length else digit)
        if not length:
            return bytes(encoded)


def utf8_string(text):
    """A UTF-8 encoded string (section 1.5.3): its length in two bytes, then the bytes."""
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def connect_packet(username, password, keepalive):
    """CONNECT (section 3.1) with a clean session and an empty client id, which the broker
    replaces (ours uses the username): protocol name and level 4, flags, keepalive, payload."""
    flags = 0x02 | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    variable = utf8_string("MQTT") + bytes([4, flags]) + keepalive.to_bytes(2, "big")
    payload = utf8_string("") + b"".join(utf8_string(field) for field in (username, password) if field is not None)
    return b"\x10" + remaining_length(len(variable) + len(payload)) + variable + payload


def publish_packet(topic, payload, qos, packet_id):
    """PUBLISH (section 3.3), `topic` already a UTF-8 string field: the packet id follows the
    topic at QoS 1 and 2 only."""
    variable = topic + packet_id.to_bytes(2, "big") if qos else topic
    return bytes([0x30 | qos << 1]) + remaining_length(len(variable) + len(payload)) + variable + payload


def split_packets(buffer):
    """The whole control packets at the start of `buffer` as (type, body), and how many bytes
    they took; a packet cut off at the end is left for the next read."""
    packets, start = [], 0
    while start + 2 <= len(buffer):
        length, multiplier, position = 0, 1, start + 1
        while True:
            if position >= len(buffer):
                return packets, start
            digit = buffer[position]
            length += (digit & 0x7F) * multiplier
            multiplier *= 128
            position += 1
            if not digit & 0x80:
                break
        if position + length > len(buffer):
            break
        packets.append((buffer[start] >> 4, bytes(buffer[position:position + length])))
        start = position + length
    return packets, start


class Connection:
    """One MQTT connection on a non-blocking socket: writes packets, reads what the broker sends,
    and keeps account of the QoS 1 packet ids not yet acknowledged."""

    def __init__(self, address, keepalive=KEEPALIVE):
        if address.tls:
            raise SystemExit("bench.publisher speaks plain MQTT only: give it an mqtt:// URL")
        self.address = address
        self.keepalive = keepalive
        self.socket = socket.create_connection((address.host, address.port), timeout=CONNECT_TIMEOUT)
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.socket.setblocking(False)
        self.inbound = bytearray()
        self.unacknowledged = bytearray(65536)  # 1 at each packet id in flight
        self.in_flight = 0
        self.acknowledged = 0
        self.last_acknowledgement = time.monotonic()
        self.connack = None
        self.last_write = time.monotonic()

    def connect(self):
        """Sends CONNECT and waits for the broker's CONNACK; exits if it refuses."""
        self.write(connect_packet(self.address.username, self.address.password, self.keepalive))
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while self.connack is None:
            if time.monotonic() > deadline:
                raise SystemExit(f"no CONNACK from {self.address.host}:{self.address.port} within {CONNECT_TIMEOUT} s")
            self.wait(deadline - time.monotonic())
        if self.connack:
            reason = REFUSALS.get(self.connack, "unknown reason")
            raise SystemExit(f"the broker refused the connection: CONNACK return code {self.connack} ({reason})")

    def write(self, data):
        """Writes all of `data`, reading the broker's packets while the socket is full."""
        view = memoryview(data)
        while view:
            try:
                view = view[self.socket.send(view):]
            except BlockingIOError:
                readable, _, _ = select.select([self.socket], [self.socket], [], 1)
                if readable:
                    self.read()
            except OSError as error:
                raise SystemExit(f"the broker closed the connection: {error}") from None
        self.last_write = time.monotonic()

    def read(self):
        """Reads whatever has arrived, a chunk at a time, and handles every whole packet in it."""
        while True:
            try:
                chunk = self.socket.recv(READ_CHUNK)
            except BlockingIOError:
                return
            except OSError as error:
                raise SystemExit(f"the broker closed the connection: {error}") from None
            if not chunk:
                raise SystemExit("the broker closed the connection")
            self.inbound += chunk
            packets, used = split_packets(self.inbound)
            del self.inbound[:used]
            for kind, body in packets:
                self.handle(kind, body)
            if len(chunk) < READ_CHUNK:
                return

    def handle(self, kind, body):
        if kind == PUBACK:  # section 3.4: the packet id of the acknowledged PUBLISH
            packet_id = int.from_bytes(body[:2], "big")
            if self.unacknowledged[packet_id]:
                self.unacknowledged[packet_id] = 0
                self.in_flight -= 1
                self.acknowledged += 1
                self.last_acknowledgement = time.monotonic()
        elif kind == CONNACK:  # section 3.2: session present flag, then the return code
            self.connack = body[1]
        elif kind != PINGRESP:
            raise SystemExit(f"unexpected MQTT packet of type {kind} from the broker")

    def wait(self, timeout):
        """Waits up to `timeout` seconds for the broker to send something, and reads it."""
        readable, _, _ = select.select([self.socket], [], [], max(0, timeout))
        if readable:
            self.read()

    def keep_alive(self):
        """PINGREQ when nothing was written for half the keepalive (section 3.1.2.10)."""
        if time.monotonic() - self.last_write >= self.keepalive / 2:
            self.write(PINGREQ)

    def idle_deadline(self):
        """The monotonic time by which something must be written to keep the connection alive."""
        return self.last_write + self.keepalive / 2

    def take_id(self, packet_id):
        """Marks `packet_id` in flight; False if it still is, from 65,535 publishes ago."""
        if self.unacknowledged[packet_id]:
            return False
        self.unacknowledged[packet_id] = 1
        self.in_flight += 1
        return True

    def close(self):
        """DISCONNECT, then waits for the broker to close its side (section 3.14.4): by then it
        has read every packet written before."""
        self.write(DISCONNECT)
        self.socket.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + CONNECT_TIMEOUT
        try:
            while time.monotonic() < deadline:
                readable, _, _ = select.select([self.socket], [], [], deadline - time.monotonic())
                if readable and not self.socket.recv(READ_CHUNK):
                    break
        except OSError:
            pass  # closed with a reset rather than a FIN: closed all the same
        self.socket.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--first", type=int, default=0, help="index of the first device")
    parser.add_argument("--devices", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True, help="readings per second, all devices together")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--qos", type=int, default=1, choices=(0, 1))
    args = parser.parse_args()
    print(json.dumps(publish(args)))


def publish(args):
    """Reading n is due at started + n / rate. Each tick writes every reading due in one send(),
    all stamped with the time just before it, then reads the acknowledgements that arrived."""
    connection = Connection(parse_mqtt_url(args.url))
    connection.connect()
    topics = [utf8_string(f"devices/{device_id}/telemetry") for device_id in device_ids(args.first + args.devices)[args.first:]]
    total = int(args.rate * args.seconds)
    last_ts = [0] * len(topics)  # a device never sends two readings with the same ts
    packet_id = 0
    number = 0
    started = time.time()
    while number < total:
        batch = []
        now = time.time()
        due = min(total, int((now - started) * args.rate) + 1, number + MAX_BATCH)
        while number < due:
            if args.qos:
                next_id = packet_id % 65535 + 1
                if not connection.take_id(next_id):
                    break  # every id is in flight: wait for acknowledgements
                packet_id = next_id
            device = number % len(topics)
            last_ts[device] = max(int(now * 1000), last_ts[device] + 1)
            reading = {"ts": last_ts[device], "values": {"temp": round(random.uniform(15, 25), 2), "hum": number % 100, "pub": now}}
            batch.append(publish_packet(topics[device], orjson.dumps(reading), args.qos, packet_id))
            number += 1
        if batch:
            connection.write(b"".join(batch))
        connection.read()
        connection.keep_alive()
        if number < due:  # every packet id in flight
            if time.monotonic() - connection.last_acknowledgement > ACK_TIMEOUT:
                raise SystemExit(f"the broker acknowledged nothing for {ACK_TIMEOUT} s with 65,535 readings in flight")
            connection.wait(1)
        elif number < total:
            # Sleep, not wait: acknowledgements arriving would cut the tick short.
            next_tick = max(started + number / args.rate, time.time() + TICK)
            time.sleep(max(0, min(next_tick - time.time(), connection.idle_deadline() - time.monotonic())))
    finished = time.time()
    deadline = time.monotonic() + ACK_TIMEOUT
    while connection.in_flight:
        if time.monotonic() > deadline:
            acknowledged = connection.acknowledged
            raise SystemExit(f"only {acknowledged} of {total} readings acknowledged within {ACK_TIMEOUT} s of the last publish")
        connection.wait(min(deadline, connection.idle_deadline()) - time.monotonic())
        connection.keep_alive()
    connection.close()
    return {"published": total, "started": started, "finished": finished}


if __name__ == "__main__":
    main()
