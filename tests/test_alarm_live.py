"""Alarm frames from a web process (the API's acknowledge and clear): straight to the live
group, once the change commits, in the API's shape. The bridge's road is in
tests/test_alarm_evaluation.py."""
import asyncio

import orjson
import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.utils import timezone

from alarms import lifecycle
from alarms.models import AlarmRule
from telemetry.events import LIVE_GROUP

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_an_acknowledge_and_a_clear_reach_the_live_group_once_committed(device, owner):
    layer = get_channel_layer()
    relay = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(LIVE_GROUP, relay)
    rule = AlarmRule.objects.create(owner=owner, name="Boiler too hot", kind="threshold", key="temp", op=">", value=80)
    alarm, raised = lifecycle.raise_or_count(rule, device.id, crossings=1, last_value=81.5, at=timezone.now())
    assert raised
    async_to_sync(layer.receive)(relay)  # the raise

    with transaction.atomic():
        lifecycle.acknowledge(alarm.pk, at=timezone.now(), by=owner, comment="on it")
        # Sent at once when sent (group_send has returned): nothing is, before the commit.
        with pytest.raises(TimeoutError):
            async_to_sync(asyncio.wait_for)(layer.receive(relay), 0.2)
    event = async_to_sync(layer.receive)(relay)
    assert (event["type"], event["device"]) == ("live.event", device.id)
    frame = orjson.loads(event["frame"])
    assert frame["type"] == "alarm"
    assert {key: frame["alarm"][key] for key in ("id", "rule", "state", "acknowledged", "acknowledged_by", "count", "last_value")} == {
        "id": alarm.pk, "rule": {"id": rule.pk, "name": "Boiler too hot"}, "state": "active", "acknowledged": True,
        "acknowledged_by": owner.username, "count": 1, "last_value": 81.5,
    }

    cleared_at = timezone.now()
    lifecycle.clear(alarm.pk, at=cleared_at, by=owner)
    frame = orjson.loads(async_to_sync(layer.receive)(relay)["frame"])
    assert (frame["alarm"]["state"], frame["alarm"]["cleared_at"]) == ("cleared", int(cleared_at.timestamp() * 1000))
