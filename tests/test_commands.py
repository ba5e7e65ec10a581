"""devices.commands: a command's life from pending to sent, then succeeded, failed or expired."""
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import orjson
import pytest
from django.db import connection

from bridge.protocol import CommandResult
from devices.commands import (
    claim_for_sending, create_command, expire_due, fail_unsendable, record_result, sendable_ids
)
from devices.models import Command
from telemetry.events import command_event

pytestmark = pytest.mark.postgres

T0 = datetime(2025, 11, 24, 12, 0, tzinfo=dt_timezone.utc)
Status = Command.Status


@pytest.fixture
def owner(make_user):
    return make_user("owner")


@pytest.fixture
def online(make_device, owner):
    return make_device("online-1", owner, online=True)


@pytest.fixture
def offline(make_device, owner):
    return make_device("offline-1", owner, online=False)


def make_command(device, created=T0, ttl=60, status=Status.PENDING, name="reboot", timeout=30, params=None):
    """A command created at `created`, expiring `ttl` seconds later, waiting `timeout` seconds
    for its answer once sent."""
    return Command.objects.create(
        device=device, name=name, params=params or {}, ttl=ttl, timeout=timeout, created=created, status=status
    )


def reloaded(command):
    return Command.objects.get(pk=command.pk)


def at(seconds):
    return T0 + timedelta(seconds=seconds)


# Creating.


def test_a_new_command_is_pending_and_expires_after_its_ttl(online, owner):
    command = create_command(online.pk, owner, "set_interval", {"seconds": 5}, 30, 7)
    stored = reloaded(command)
    assert (stored.device_id, stored.name, stored.params, stored.created_by, stored.status, stored.timeout) == (
        "online-1", "set_interval", {"seconds": 5}, owner, Status.PENDING, 7
    )
    assert stored.expires_at == stored.created + timedelta(seconds=30)
    assert (stored.sent_at, stored.answer_by, stored.finished_at, stored.result, stored.error) == (None, None, None, None, "")


def test_a_new_commands_timeout_defaults_to_the_setting(online, owner, settings):
    settings.COMMAND_DEFAULT_TIMEOUT = 17
    assert reloaded(create_command(online.pk, owner, "ping", {}, 30)).timeout == 17


# Claiming for sending.


def test_a_pending_command_of_an_online_device_is_claimed_and_marked_sent(online):
    command = make_command(online, timeout=30)
    claimed = claim_for_sending(command.pk, at(1))
    assert (claimed.pk, claimed.status, claimed.sent_at, claimed.answer_by) == (command.pk, Status.SENT, at(1), at(31))
    assert (reloaded(command).status, reloaded(command).sent_at, reloaded(command).answer_by) == (Status.SENT, at(1), at(31))


@pytest.mark.parametrize("device_online, now, status", [
    (False, at(1), Status.PENDING),
    (True, at(60), Status.PENDING),
    (True, at(61), Status.PENDING),
    (True, at(1), Status.SENT),
    (True, at(1), Status.SUCCEEDED),
    (True, at(1), Status.FAILED),
    (True, at(1), Status.EXPIRED),
], ids=["device-offline", "expires-now", "expired", "sent", "succeeded", "failed", "expired-status"])
def test_a_command_is_not_claimed_unless_pending_unexpired_and_its_device_online(online, offline, device_online, now, status):
    command = make_command(online if device_online else offline, status=status)
    assert claim_for_sending(command.pk, now) is None
    assert (reloaded(command).status, reloaded(command).sent_at) == (status, None)


def test_a_command_is_claimed_once(online):
    command = make_command(online)
    assert claim_for_sending(command.pk, at(1)) is not None
    assert claim_for_sending(command.pk, at(2)) is None
    assert reloaded(command).sent_at == at(1)


def test_an_unknown_command_is_not_claimed(online):
    assert claim_for_sending(uuid.uuid4(), at(1)) is None


# Finding what to send.


def test_sendable_ids_are_the_pending_unexpired_commands_of_online_devices_oldest_first(online, offline, make_device, owner):
    other = make_device("online-2", owner, online=True)
    newer = make_command(online, created=at(2))
    older = make_command(other, created=at(1))
    make_command(offline, created=at(0))  # its device is offline
    make_command(online, created=at(-100), ttl=60)  # expired at at(-40)
    make_command(online, created=at(0), status=Status.SENT)
    make_command(online, created=at(0), status=Status.SUCCEEDED)
    assert sendable_ids(at(10)) == [older.pk, newer.pk]
    assert sendable_ids(at(10), "online-1") == [newer.pk]
    assert sendable_ids(at(10), "offline-1") == []


# Expiring.


def test_expire_due_expires_only_pending_commands_whose_ttl_ran_out(online, offline):
    due = make_command(offline, created=at(0), ttl=10)
    due_now = make_command(online, created=at(5), ttl=5)  # expires_at == now
    waiting = make_command(offline, created=at(5), ttl=10)
    sent = make_command(online, created=at(0), ttl=1, status=Status.SENT)
    answered = make_command(online, created=at(0), ttl=1, status=Status.SUCCEEDED)

    expired = expire_due(at(10))

    assert sorted(command.pk for command in expired) == sorted([due.pk, due_now.pk])
    assert all((command.status, command.finished_at) == (Status.EXPIRED, at(10)) for command in expired)
    assert [reloaded(c).status for c in (due, due_now, waiting, sent, answered)] == [
        Status.EXPIRED, Status.EXPIRED, Status.PENDING, Status.SENT, Status.SUCCEEDED
    ]


def test_expire_due_expires_sent_commands_unanswered_by_their_timeout(online):
    late = make_command(online, timeout=5)
    claim_for_sending(late.pk, at(1))  # to be answered by at(6)
    on_time = make_command(online, timeout=5)
    claim_for_sending(on_time.pk, at(2))  # by at(7)

    assert expire_due(at(5)) == []
    expired = expire_due(at(6))
    assert [command.pk for command in expired] == [late.pk]
    assert (expired[0].status, expired[0].finished_at, expired[0].sent_at) == (Status.EXPIRED, at(6), at(1))
    assert "no answer within its timeout of 5 s" in expired[0].error
    assert reloaded(on_time).status == Status.SENT

    # Its answer, come late, is refused as an answer to no command awaiting one.
    assert record_result("online-1", CommandResult(late.pk, True, result="late")) is None
    assert reloaded(late).status == Status.EXPIRED
    assert record_result("online-1", CommandResult(on_time.pk, True)).status == Status.SUCCEEDED
    assert expire_due(at(100)) == []


def test_a_pending_command_expires_with_its_reason(offline):
    make_command(offline, ttl=10)
    (expired,) = expire_due(at(10))
    assert "not sent: its device was not online within its ttl of 10 s" in expired.error


def test_a_command_is_expired_once(online):
    make_command(online, ttl=10)
    assert len(expire_due(at(10))) == 1
    assert expire_due(at(20)) == []


# Answers.


@pytest.mark.parametrize("answer, status, result, error", [
    (dict(ok=True, result={"pong": 1}), Status.SUCCEEDED, {"pong": 1}, ""),
    (dict(ok=True), Status.SUCCEEDED, None, ""),
    (dict(ok=False, error="busy"), Status.FAILED, None, "busy"),
], ids=["succeeded", "succeeded-without-result", "failed"])
def test_an_answer_finishes_a_sent_command(online, answer, status, result, error):
    command = make_command(online)
    claim_for_sending(command.pk, at(1))
    recorded = record_result("online-1", CommandResult(command.pk, **answer))
    assert (recorded.pk, recorded.status, recorded.result, recorded.error) == (command.pk, status, result, error)
    assert recorded.finished_at is not None
    assert reloaded(command).status == status


def test_an_answer_to_a_command_never_sent_is_refused(online):
    # A claim is never undone (a bridge that loses its connection keeps the command sent, and
    # paho sends it on reconnection): a pending command never reached the device.
    command = make_command(online)
    assert record_result("online-1", CommandResult(command.pk, True, result=1)) is None
    assert reloaded(command).status == Status.PENDING


@pytest.mark.parametrize("status", [Status.SUCCEEDED, Status.FAILED, Status.EXPIRED])
def test_an_answer_to_a_finished_command_is_refused_and_changes_nothing(online, status):
    command = make_command(online, status=status)
    assert record_result("online-1", CommandResult(command.pk, False, error="late")) is None
    assert (reloaded(command).status, reloaded(command).error, reloaded(command).finished_at) == (status, "", None)


def test_a_second_answer_is_refused_and_the_first_kept(online):
    command = make_command(online, status=Status.SENT)
    assert record_result("online-1", CommandResult(command.pk, True, result="first")) is not None
    assert record_result("online-1", CommandResult(command.pk, False, error="second")) is None
    assert (reloaded(command).status, reloaded(command).result, reloaded(command).error) == (
        Status.SUCCEEDED, "first", ""
    )


def test_an_answer_to_an_unknown_command_is_refused(online):
    assert record_result("online-1", CommandResult(uuid.uuid4(), True)) is None


def test_an_answer_from_another_device_is_refused(online, offline):
    command = make_command(online, status=Status.SENT)
    assert record_result("offline-1", CommandResult(command.pk, True)) is None
    assert reloaded(command).status == Status.SENT


# A command stored before params were checked.


def test_a_sent_command_the_hub_cannot_encode_is_failed_with_the_reason(online):
    command = make_command(online, params={"n": 2**70})
    claim_for_sending(command.pk, at(1))
    failed = fail_unsendable(command.pk, "cannot encode", at(2))
    assert (failed.status, failed.error, failed.finished_at) == (Status.FAILED, "cannot encode", at(2))
    assert fail_unsendable(command.pk, "again", at(3)) is None  # it is no longer sent


def test_its_frame_still_tells_its_status(online):
    command = make_command(online, params={"n": 2**70, "deep": [[[[1]]]]}, status=Status.FAILED)
    frame = orjson.loads(command_event(command)["frame"])
    assert (frame["id"], frame["status"], frame["params"]) == (str(command.pk), "failed", None)


def test_bridges_claiming_the_same_commands_at_once_each_get_a_command_once(online):
    # As bridges do: each is asked for every command and claims it from its own connection.
    # On PostgreSQL the condition must sit on the row the UPDATE changes to be checked again.
    commands = [make_command(online) for _ in range(50)]
    start = threading.Barrier(4)

    def claim_all(_):
        start.wait()
        try:
            return [command.pk for command in commands if claim_for_sending(command.pk, at(1)) is not None]
        finally:
            connection.close()

    with ThreadPoolExecutor(4) as pool:
        claimed = [pk for won in pool.map(claim_all, range(4)) for pk in won]
    assert sorted(claimed) == sorted(command.pk for command in commands)
