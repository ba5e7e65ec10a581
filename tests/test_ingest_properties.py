"""Random valid and invalid telemetry from many devices, through the real bridge into the
database (SQLite here, PostgreSQL again through tests/test_postgres.py): every accepted reading
is stored exactly once, every refused message is counted with its reason, and ingest never
stalls. One device's readings of the key `poison` are refused by the database itself, so the
bridge's splitting of a refused flush is exercised too."""
import itertools
import time
from collections import Counter

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.protocol import MAX_NUMBER
from telemetry.models import Reading, column_value, value_columns
from tests.conftest import running, running_hub
from tests.ingest import counted_so_far, database_refuses, wait_for_rejections
from tests.live import Device, unique_id, wait_until
from tests.servers import MosquittoServer

pytestmark = [pytest.mark.live, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

DEVICES = 5
MAX_PAYLOAD_BYTES = 4096
POISONED = 0  # the device whose `poison` readings the database refuses

keys = st.sampled_from(["temp", "hum", "note", "on", "n.1", "Zone_2-b"])
good_values = st.one_of(
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(-MAX_NUMBER, MAX_NUMBER),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20),
)
measurements = st.dictionaries(keys, good_values, min_size=1, max_size=3)

# How a message goes wrong, and the reason the bridge must count for it.
FAULTS = {
    "nul": "bad_value",
    "null_value": "bad_value",
    "bad_key": "bad_key",
    "old_ts": "bad_ts",
    "truncated": "not_json",
    "deep": "too_deep",
    "empty_list": "bad_shape",
    "oversized": "too_large",
    "poison": "store_refused",
}

messages = st.tuples(
    st.integers(0, DEVICES - 1),
    st.none() | st.sampled_from(sorted(FAULTS)),
    st.lists(measurements, min_size=1, max_size=4),
)


def payload(fault, entries):
    """A telemetry message of timestamped `entries` [(ts, values)], spoilt as `fault` says."""
    document = [{"ts": ts, "values": values} for ts, values in entries]
    first = document[0]["values"]
    match fault:
        case "nul":
            first["note"] = "a\x00b"
        case "null_value":
            first["temp"] = None
        case "bad_key":
            first["b@d"] = 1
        case "old_ts":
            document[-1]["ts"] = 1000
        case "truncated":
            return orjson.dumps(document)[:-1]
        case "deep":
            deep = 1
            for _ in range(40):
                deep = [deep]
            first["deep"] = deep
        case "empty_list":
            document = []
        case "oversized":
            document = [{"ts": ts, "values": {"note": "x" * 256}} for ts in range(entries[0][0], entries[0][0] + 20)]
        case "poison":
            first["poison"] = 1
    return orjson.dumps(document)


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """The module's own broker: only its devices' messages reach the bridge, so it can count them all."""
    yield from running(MosquittoServer(tmpdir=tmp_path_factory.mktemp("mosquitto")))


@pytest.fixture(scope="module")
def hub(django_db_setup, redis_server, broker, tmp_path_factory):
    yield from running_hub(redis_server, broker, tmp_path_factory.mktemp("hub"),
                           max_payload_bytes=MAX_PAYLOAD_BYTES, device_max_messages_per_second=100_000)


@pytest.fixture
def sensors(hub, make_device, owner):
    connected = [Device(hub.mqtt_url, device.id, device.mqtt_password).connect()
                 for device in (make_device(unique_id("prop"), owner) for _ in range(DEVICES))]
    yield connected
    for sensor in connected:
        sensor.go_offline()


def stored(device_ids, timestamps):
    """(device, key, ts, value) of the readings stored at these timestamps."""
    readings = Reading.objects.filter(device__in=device_ids, ts__in=timestamps)
    return Counter((reading.device_id, reading.key, reading.ts, reading.value) for reading in readings)


def test_random_telemetry_is_stored_exactly_once_or_counted_refused_and_never_stalls(hub, sensors):
    from django.conf import settings as django_settings

    device_ids = [sensor.device_id for sensor in sensors]
    # Unique timestamps for every entry of every example: a reading stored twice, or one
    # refused but stored, shows up.
    clock = itertools.count(int(time.time() * 1000) - 3_600_000)
    poisoned = f"{{row}}device_id = '{device_ids[POISONED]}' AND {{row}}key = 'poison'"

    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(messages, min_size=1, max_size=25))
    def run(batch):
        before = counted_so_far(hub)
        expected, refused, timestamps, published = Counter(), Counter(), [], []
        for device, fault, entries in batch:
            if fault == "poison":
                device = POISONED
            timed = [(next(clock), dict(values)) for values in entries]
            timestamps += [ts for ts, _ in timed] + list(range(timed[0][0], timed[0][0] + 20))
            if fault is None:
                for ts, values in timed:
                    expected.update((device_ids[device], key, ts, column_value(*value_columns(value)))
                                    for key, value in values.items())
            else:
                refused[FAULTS[fault]] += 1
            sensor = sensors[device]
            # Published without waiting for each acknowledgement: the bridge gets them in bursts,
            # so flushes hold many messages.
            published.append(sensor.client.publish(sensor.topic("telemetry"), payload(fault, timed), qos=1))
        for info in published:
            info.wait_for_publish(10)

        # Ingest goes on: a reading sent after the batch is stored.
        last = next(clock)
        sensors[-1].send_reading({"after": 1}, ts=last)
        wait_until(lambda: Reading.objects.filter(device_id=device_ids[-1], ts=last).exists(),
                   message="a good reading sent after the batch stored")
        expected[(device_ids[-1], "after", last, 1.0)] += 1
        wait_until(lambda: stored(device_ids, timestamps + [last]) == expected,
                   message="exactly the accepted readings stored")
        wait_for_rejections(hub, refused, before, exactly=True)

    with database_refuses(django_settings.DATABASES["default"], Reading._meta.db_table, poisoned):
        run()
