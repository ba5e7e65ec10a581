"""bridge.mqtt.BufferedClient, which takes the PUBLISH packets of a chunk read from the socket
itself: whatever the packets and however the stream is cut, its messages are paho's own."""
import socket
import struct

import paho.mqtt.client as mqtt
from hypothesis import given, settings, strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from bridge.mqtt import BufferedClient

PINGRESP = b"\xd0\x00"


def remaining_length(length):
    encoded = bytearray()
    while True:
        length, byte = divmod(length, 128)
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(encoded)


def publish(topic, payload, qos, mid, retain=False, dup=False):
    """A PUBLISH packet of MQTT 3.1.1."""
    body = struct.pack("!H", len(topic)) + topic + (struct.pack("!H", mid) if qos else b"") + payload
    return bytes([0x30 | dup << 3 | qos << 1 | retain]) + remaining_length(len(body)) + body


def received(client_class, stream, read_size=None):
    """The messages a client makes of `stream`, read from a real socket, and whether the client
    kept the connection (False: it found the stream malformed)."""
    messages = []
    client = client_class(CallbackAPIVersion.VERSION2, client_id="reader", protocol=mqtt.MQTTv311, manual_ack=True)
    client.on_message = lambda _client, _userdata, message: messages.append(
        (message.topic, message.payload, message.qos, message.mid, message.retain, message.dup))
    if read_size:
        client.read_size = read_size
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(stream)
        ours.setblocking(False)
        client._sock = ours
        read = client.loop_read_all if client_class is BufferedClient else client.loop_read
        for _ in range(len(stream) + 1):
            read()
            if client._sock is None:  # paho closed it
                return messages, False
    return messages, True


packets = st.one_of(
    st.builds(publish, topic=st.text(min_size=1, max_size=40).map(str.encode), payload=st.binary(max_size=300),
              qos=st.integers(0, 2), mid=st.integers(1, 65535), retain=st.booleans(), dup=st.booleans()),
    st.just(publish(b"devices/big/telemetry", b"x" * 3_000, 1, 7)),  # longer than any chunk here
    st.just(PINGRESP),
)


@settings(max_examples=150, deadline=None)
@given(stream=st.lists(packets, max_size=30).map(b"".join), read_size=st.integers(1, 70))
def test_the_messages_are_paho_s_own_however_the_stream_is_cut_into_chunks(stream, read_size):
    ours, kept = received(BufferedClient, stream, read_size)
    assert kept
    assert ours == received(mqtt.Client, stream)[0]


def test_a_publish_whose_topic_overruns_the_packet_is_left_to_paho_which_drops_the_connection():
    good = publish(b"devices/d1/telemetry", b"{}", 1, 1)
    overrun = b"\x32\x04\x00\x09ab"  # a topic of 9 bytes in a packet of 4
    messages, kept = received(BufferedClient, good + overrun + good)
    assert messages == [("devices/d1/telemetry", b"{}", 1, 1, False, False)]
    assert not kept


def written(acknowledge):
    """The bytes a client sends when `acknowledge(client)` runs."""
    client = BufferedClient(CallbackAPIVersion.VERSION2, client_id="reader", protocol=mqtt.MQTTv311, manual_ack=True)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        client._sock = ours
        acknowledge(client)
        theirs.setblocking(False)
        return theirs.recv(65536)


def test_acknowledging_many_at_once_sends_what_paho_sends_for_each():
    mids = [1, 255, 256, 4242, 65535]
    one_by_one = written(lambda client: [client.ack(mid, 1) for mid in mids])
    assert written(lambda client: client.ack_all(mids)) == one_by_one
    assert len(one_by_one) == 4 * len(mids)
