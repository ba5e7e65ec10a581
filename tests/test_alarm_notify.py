"""Alarm notifications: destinations over the API, changes made into notifications once,
storms coalesced, and deliveries to a real HTTP receiver and a real SMTP server (aiosmtpd),
retried while the receiver is down; then the same through the real bridge, across a restart."""
import asyncio
import email
import hashlib
import hmac
import http.server
import queue
import socket
import threading
import time
from datetime import UTC, datetime

import orjson
import pytest
from aiosmtpd.controller import Controller
from asgiref.sync import sync_to_async
from django.db import connection, connections

from alarms import lifecycle
from alarms.models import AlarmChange, AlarmRule, DeliveryAttempt, Notification, NotificationDestination
from alarms.notify_worker import Notifier
from devices.models import Device
from tests.conftest import PASSWORD, running_hub
from tests.live import TIMEOUT, unique_id, wait_until
from tests.manual_clock import Clock
from tests.servers import free_port

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

SECRET = "a-webhook-secret-of-some-length"
PENDING, SENT, FAILED = Notification.Status.PENDING, Notification.Status.SENT, Notification.Status.FAILED


# Real receivers.

class Receiver:
    """An HTTP receiver on a port of its own: keeps each POST whose signature checks, answers
    `status` (and `location`, for a redirect)."""

    def __init__(self, port=None, secret=SECRET):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook?from=telehub"
        self.secret = secret
        self.received = queue.Queue()
        self.status = 200
        self.answering = threading.Event()  # cleared: it holds each request unanswered until set
        self.answering.set()
        self.server = None

    def start(self):
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                expected = "sha256=" + hmac.new(receiver.secret.encode(), body, hashlib.sha256).hexdigest()
                signed = hmac.compare_digest(self.headers.get("X-Telehub-Signature", ""), expected)
                receiver.received.put((self.path, signed, orjson.loads(body)))
                receiver.answering.wait(TIMEOUT)
                self.send_response(receiver.status)
                if 300 <= receiver.status < 400:
                    self.send_header("Location", receiver.url + "&moved=1")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def next(self, timeout=TIMEOUT):
        try:
            return self.received.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the receiver got nothing within {timeout} s") from None

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class Mailbox:
    """An SMTP server (aiosmtpd) that keeps each message it accepts."""

    def __init__(self):
        self.port = free_port()
        self.messages = queue.Queue()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server, session, envelope):
        self.messages.put((envelope.rcpt_tos, email.message_from_bytes(envelope.content)))
        return "250 Message accepted for delivery"

    def next(self, timeout=TIMEOUT):
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no email within {timeout} s") from None


class SlowMailbox(Mailbox):
    """An SMTP server that takes `rcpt_seconds` to accept each recipient, and never answers the
    message's data while `data_stalls`."""

    def __init__(self, rcpt_seconds=0.0, data_stalls=False):
        super().__init__()
        self.rcpt_seconds = rcpt_seconds
        self.data_stalls = data_stalls
        self.released = threading.Event()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        await asyncio.sleep(self.rcpt_seconds)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data_stalls:
            await asyncio.get_running_loop().run_in_executor(None, self.released.wait, TIMEOUT)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def slow_mailbox(settings):
    boxes = []

    def start(**options):
        boxes.append(SlowMailbox(**options))
        boxes[-1].controller.start()
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", boxes[-1].port
        return boxes[-1]

    yield start
    for box in boxes:
        box.released.set()
        box.controller.stop()


@pytest.fixture
def receiver():
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def mailbox(settings):
    box = Mailbox()
    box.controller.start()
    # pytest-django swaps in the in-memory backend; these tests want the real SMTP one.
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", box.port
    yield box
    box.controller.stop()


class RunningNotifier:
    """A Notifier's run() on an event loop in a thread of its own, as the bridge runs it,
    with a clock the test moves."""

    def __init__(self, **options):
        self.clock = Clock(time.time())
        self.notifier = Notifier(allow_private=True, clock=self.clock, **options)
        self.notifier.poll_seconds = 0.05
        self.notifier.remind_every_seconds = 0.05
        self.loop = asyncio.new_event_loop()
        self.task = None
        self.thread = threading.Thread(target=self._run)

    def _run(self):
        self.task = self.loop.create_task(self.notifier.run())
        try:
            self.loop.run_until_complete(self.task)
        except asyncio.CancelledError:
            pass
        finally:
            # The connections of the thread that ran its database work.
            self.loop.run_until_complete(sync_to_async(connections.close_all)())
            self.loop.close()

    def now(self):
        return datetime.fromtimestamp(self.clock(), UTC)

    def advance(self, seconds):
        self.clock.now += seconds

    def start(self):
        self.thread.start()
        wait_until(lambda: self.task is not None, message="the notifier to start")
        return self

    def stop(self):
        self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive()


@pytest.fixture
def start_notifier():
    started = []

    def start(**options):
        started.append(RunningNotifier(**options).start())
        return started[-1]

    yield start
    for notifier in started:
        notifier.stop()


# Setting up alarms as the evaluation would.

def destination(owner, **fields):
    fields.setdefault("kind", "webhook" if "url" in fields else "email")
    if fields["kind"] == "webhook":
        fields.setdefault("secret", SECRET)
    return NotificationDestination.objects.create(owner=owner, **fields)


def rule_to(owner, *destinations, **fields):
    rule = AlarmRule.objects.create(owner=owner, name=fields.pop("name", "Boiler offline"), kind="offline",
                                    seconds=60, **fields)
    rule.destinations.set(destinations)
    return rule


def raise_alarm(rule, device_id, at, value=None):
    alarm, raised = lifecycle.raise_or_count(rule, device_id, crossings=1, last_value=value, at=at)
    assert raised
    return alarm


def notifications(destination):
    return list(Notification.objects.filter(destination=destination).order_by("scheduled_at", "id"))


def deliveries(destination):
    return list(DeliveryAttempt.objects.filter(notification__destination=destination).order_by("at", "id"))


# The destinations API.

@pytest.fixture
def api(client, owner):
    client.force_login(owner)
    return client


def post(client, body):
    return client.post("/api/notification-destinations/", body, content_type="application/json")


def test_a_webhook_secret_is_shown_in_full_only_when_it_is_made(api, owner):
    made = post(api, {"kind": "webhook", "name": "ops", "url": "https://hooks.example.com/telehub"})
    assert made.status_code == 201
    secret = made.json()["secret"]
    assert len(secret) >= 32
    assert NotificationDestination.objects.get(pk=made.json()["id"]).secret == secret
    listed = api.get("/api/notification-destinations/").json()
    assert listed == [{**made.json(), "secret": "…" + secret[-4:]}]
    assert api.get(f"/api/notification-destinations/{made.json()['id']}/").json()["secret"] == "…" + secret[-4:]

    mail = post(api, {"kind": "email", "to": ["ops@example.com", "ops@example.com", "boss@example.org"]})
    assert mail.status_code == 201
    assert mail.json()["to"] == ["ops@example.com", "boss@example.org"]
    assert "secret" not in mail.json()


BAD_DESTINATIONS = [
    ({"kind": "webhook", "url": "ftp://example.com/"}, "url"),
    ({"kind": "webhook", "url": "javascript:alert(1)"}, "url"),
    ({"kind": "webhook", "url": "http://user:pw@example.com/"}, "url"),
    ({"kind": "webhook", "url": "http://127.0.0.1:8000/"}, "url"),
    ({"kind": "webhook", "url": "http://[::1]/"}, "url"),
    ({"kind": "webhook", "url": "http://10.1.2.3/"}, "url"),
    ({"kind": "webhook", "url": "http://169.254.169.254/latest/meta-data/"}, "url"),
    ({"kind": "webhook", "url": "http://localhost/"}, "url"),
    ({"kind": "webhook", "url": "https://example.com/" + "a" * 2000}, "url"),
    ({"kind": "webhook"}, "url"),
    ({"kind": "webhook", "url": "https://example.com/", "secret": "short"}, "secret"),
    ({"kind": "webhook", "url": "https://example.com/", "to": ["a@example.com"]}, "to"),
    ({"kind": "email", "to": []}, "to"),
    ({"kind": "email", "to": ["not an address"]}, "to"),
    ({"kind": "email", "to": [f"ops{n}@example.com" for n in range(21)]}, "to"),
    ({"kind": "email", "to": ["ops@example.com"], "url": "https://example.com/"}, "url"),
    ({"kind": "sms", "to": ["+15550100"]}, "kind"),
]


def test_bad_destinations_are_a_400_naming_the_field(api):
    for body, field in BAD_DESTINATIONS:
        answer = post(api, body)
        assert answer.status_code == 400, (body, answer.content)
        assert any(problem["where"].endswith(field) for problem in answer.json()["detail"]), (body, answer.json())
    assert not NotificationDestination.objects.exists()


def test_a_user_has_a_bounded_number_of_destinations(api, owner):
    from alarms.destinations_api import MAX_DESTINATIONS_PER_USER

    NotificationDestination.objects.bulk_create(
        NotificationDestination(owner=owner, kind="email", to=["ops@example.com"]) for _ in range(MAX_DESTINATIONS_PER_USER)
    )
    answer = post(api, {"kind": "email", "to": ["one-more@example.com"]})
    assert answer.status_code == 400
    assert f"{MAX_DESTINATIONS_PER_USER} destinations" in answer.json()["detail"][0]["problem"]


def test_another_users_destination_is_a_404(client, make_user, owner):
    theirs = destination(owner, url="https://hooks.example.com/")
    client.force_login(make_user(unique_id("stranger")))
    for method, path in [
        ("get", f"/api/notification-destinations/{theirs.pk}/"),
        ("get", f"/api/notification-destinations/{theirs.pk}/deliveries"),
        ("delete", f"/api/notification-destinations/{theirs.pk}/"),
    ]:
        assert getattr(client, method)(path).status_code == 404
    assert client.get("/api/notification-destinations/").json() == []
    assert NotificationDestination.objects.filter(pk=theirs.pk).exists()


def test_anonymous_callers_get_a_401(client):
    assert client.get("/api/notification-destinations/").status_code == 401
    assert post(client, {"kind": "email", "to": ["ops@example.com"]}).status_code == 401


def test_deleting_a_destination_drops_what_waits_for_it(api, owner, device):
    target = destination(owner, url="https://hooks.example.com/")
    rule = rule_to(owner, target)
    raise_alarm(rule, device.pk, datetime.now(UTC))
    from alarms import notify

    notify.notify_change(AlarmChange.objects.get().pk, datetime.now(UTC), 60)
    assert api.delete(f"/api/notification-destinations/{target.pk}/").status_code == 204
    assert not Notification.objects.exists()
    assert list(rule.destinations.all()) == []


# Delivery.

def test_a_webhook_is_signed_retried_while_its_receiver_is_down_and_logged(
    api, owner, device, start_notifier
):
    receiver = Receiver()  # not listening yet
    target = destination(owner, url=receiver.url)
    rule = rule_to(owner, target, notify_acknowledged=True, notify_cleared=False)
    notifier = start_notifier(retry_seconds=10, give_up_seconds=3600)
    alarm = raise_alarm(rule, device.pk, notifier.now(), value=91.5)

    wait_until(lambda: len(deliveries(target)) == 1, message="the first try")
    (first,) = deliveries(target)
    assert not first.ok and "Connection refused" in first.answer
    notifier.advance(9)  # not due yet
    receiver.start()
    try:
        with pytest.raises(AssertionError):
            receiver.next(timeout=0.5)
        notifier.advance(1)
        path, signed, body = receiver.next()
        assert (path, signed) == ("/hook?from=telehub", True)
        assert body == {"event": "raised", "alarm": {
            "id": alarm.pk, "rule": {"id": rule.pk, "name": "Boiler offline"}, "device": device.pk,
            "severity": "major", "state": "active", "acknowledged": False, "acknowledged_by": None,
            "raised_at": int(alarm.raised_at.timestamp() * 1000), "cleared_at": None, "count": 1, "last_value": 91.5,
        }}
        wait_until(lambda: Notification.objects.get().status == SENT, message="the notification sent")

        log = api.get(f"/api/notification-destinations/{target.pk}/deliveries").json()
        assert [(entry["ok"], entry["answer"][:3]) for entry in log] == [(True, "200"), (False, "Con")]
        assert log[0]["notification"] == {"id": Notification.objects.get().pk, "event": "raised", "status": "sent",
                                          "attempts": 2}

        # The window of the first message has passed: an acknowledgement goes out at once.
        notifier.advance(60)
        lifecycle.acknowledge(alarm.pk, at=notifier.now(), by=owner, comment="on it")
        _, signed, body = receiver.next()
        assert signed and body["event"] == "acknowledged"
        assert body["alarm"]["acknowledged_by"] == owner.username
        # Not asked for: clearing sends nothing.
        lifecycle.clear(alarm.pk, at=notifier.now())
        wait_until(lambda: AlarmChange.objects.filter(notified_at__isnull=True).count() == 0, message="the clear seen")
        assert Notification.objects.count() == 2
    finally:
        receiver.stop()


def test_a_receiver_that_keeps_failing_is_given_up_after_the_give_up_time(owner, device, receiver, start_notifier):
    receiver.status = 503
    target = destination(owner, url=receiver.url)
    notifier = start_notifier(retry_seconds=10, give_up_seconds=3600)
    raise_alarm(rule_to(owner, target), device.pk, notifier.now())
    wait_until(Notification.objects.exists, message="the notification")
    tried = 0
    while Notification.objects.get().status == PENDING:
        wait_until(lambda: len(deliveries(target)) > tried, message=f"try {tried + 1}")
        tried = len(deliveries(target))
        notifier.advance(600)
    assert Notification.objects.get().status == FAILED
    answers = [attempt.answer for attempt in deliveries(target)]
    assert set(answers) == {"503 Service Unavailable"}
    # One try per 600 s step (no delay is longer): the one an hour after the first is the last.
    assert len(answers) == receiver.received.qsize() == 7


def test_a_slow_receiver_does_not_hold_up_another(owner, device, receiver, start_notifier):
    slow = Receiver().start()
    slow.answering.clear()
    try:
        rule = rule_to(owner, destination(owner, url=slow.url), destination(owner, url=receiver.url))
        start_notifier(concurrency=2)
        raise_alarm(rule, device.pk, datetime.now(UTC))
        slow.next()
        receiver.next()
        wait_until(lambda: Notification.objects.filter(status=SENT).count() == 1, message="the quick one sent")
        assert Notification.objects.get(status=PENDING).destination.url == slow.url
        slow.answering.set()
        wait_until(lambda: Notification.objects.filter(status=SENT).count() == 2, message="the slow one sent")
    finally:
        slow.answering.set()
        slow.stop()


def test_a_receiver_that_answers_a_byte_at_a_time_is_cut_off(owner, device, start_notifier):
    stop = threading.Event()

    def drip(listener):
        with listener.accept()[0] as client:
            client.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"z" * 1000:
                if stop.wait(0.2):
                    return
                client.send(bytes([byte]))

    with socket.create_server(("127.0.0.1", 0)) as listener:
        threading.Thread(target=drip, args=(listener,), daemon=True).start()
        target = destination(owner, url=f"http://127.0.0.1:{listener.getsockname()[1]}/")
        start_notifier(timeout=1)
        try:
            raise_alarm(rule_to(owner, target), device.pk, datetime.now(UTC))
            wait_until(lambda: deliveries(target), message="the try cut off")
        finally:
            stop.set()
    assert deliveries(target)[0].answer == "no whole answer within 3 s"


def test_an_smtp_server_that_stalls_is_given_up_at_the_step_it_stalls_in(owner, device, slow_mailbox, start_notifier):
    box = slow_mailbox(data_stalls=True)
    inbox = destination(owner, to=["ops@example.com"])
    start_notifier(timeout=1)
    raise_alarm(rule_to(owner, inbox), device.pk, datetime.now(UTC))
    wait_until(lambda: deliveries(inbox), message="the try given up")
    assert deliveries(inbox)[0].answer == "SMTPServerDisconnected: Connection unexpectedly closed: timed out"
    assert box.messages.empty()


def test_an_smtp_server_that_answers_each_step_slowly_is_cut_off_at_the_deadline(owner, device, slow_mailbox,
                                                                                 start_notifier):
    # Each recipient accepted within the timeout (2 s), all 20 of them not within three (6 s).
    box = slow_mailbox(rcpt_seconds=0.5)
    inbox = destination(owner, to=[f"ops-{n}@example.com" for n in range(20)])
    start_notifier(timeout=2)
    raise_alarm(rule_to(owner, inbox), device.pk, datetime.now(UTC))
    wait_until(lambda: deliveries(inbox), message="the try cut off")
    assert deliveries(inbox)[0].answer == "not accepted within 6 s"
    assert box.messages.empty()


def test_a_redirect_is_not_followed(owner, device, receiver, start_notifier):
    receiver.status = 302
    target = destination(owner, url=receiver.url)
    start_notifier()
    raise_alarm(rule_to(owner, target), device.pk, datetime.now(UTC))
    wait_until(lambda: deliveries(target), message="a try")
    assert deliveries(target)[0].answer == "302 Found (redirects are not followed)"
    assert receiver.received.qsize() == 1


def test_without_allow_private_a_webhook_to_a_private_address_is_not_sent(owner, device, receiver, start_notifier):
    # Made before the setting was turned off, say: the delivery checks again.
    target = destination(owner, url=receiver.url)
    running = start_notifier()
    running.notifier.allow_private = False
    raise_alarm(rule_to(owner, target), device.pk, running.now())
    wait_until(lambda: deliveries(target), message="a try")
    assert "resolves to 127.0.0.1, not a public address" in deliveries(target)[0].answer
    assert receiver.received.empty()


def test_a_storm_sends_one_email_at_once_then_one_digest_per_window(owner, mailbox, start_notifier):
    Device.objects.bulk_create(Device(id=f"storm-{n:04d}", owner=owner) for n in range(1000))
    inbox = destination(owner, to=["ops@example.com", "boss@example.org"])
    rule = rule_to(owner, inbox, severity="critical")
    notifier = start_notifier(digest_seconds=60)
    now = notifier.now()
    for n in range(1000):
        raise_alarm(rule, f"storm-{n:04d}", now)

    recipients, first = mailbox.next(timeout=60)
    assert recipients == ["ops@example.com", "boss@example.org"]
    assert first["Subject"].startswith("[Telehub] critical alarm raised: Boiler offline on storm-")
    wait_until(lambda: not AlarmChange.objects.filter(notified_at__isnull=True).exists(), timeout=120,
               message="every change made into notifications")
    assert mailbox.messages.empty()
    single, digest = notifications(inbox)
    assert (single.status, digest.event, digest.status) == (SENT, "digest", PENDING)
    assert (digest.next_attempt_at - single.scheduled_at).total_seconds() == 60

    notifier.advance(60)
    _, second = mailbox.next(timeout=30)
    assert second["Subject"] == "[Telehub] 999 alarm notifications"
    lines = second.get_payload(decode=True).decode().splitlines()
    assert len(lines) == 999 and all(line.startswith("raised: critical 'Boiler offline' on storm-") for line in lines)
    wait_until(lambda: Notification.objects.get(pk=digest.pk).status == SENT, message="the digest sent")
    assert len(Notification.objects.get(pk=digest.pk).body["events"]) == 999
    assert mailbox.messages.empty()


def test_a_webhook_digest_carries_each_event_with_its_alarm(owner, device, make_device, receiver, start_notifier):
    other = make_device(unique_id("sensor"), owner)
    target = destination(owner, url=receiver.url)
    rule = rule_to(owner, target)
    notifier = start_notifier(digest_seconds=60)
    first = raise_alarm(rule, device.pk, notifier.now())
    assert receiver.next()[2]["event"] == "raised"
    notifier.advance(5)
    second = raise_alarm(rule, other.pk, notifier.now())
    lifecycle.clear(first.pk, at=notifier.now())
    wait_until(lambda: not AlarmChange.objects.filter(notified_at__isnull=True).exists(), message="changes seen")
    notifier.advance(55)
    _, signed, body = receiver.next()
    assert signed
    assert [(event["event"], event["alarm"]["id"]) for event in body["events"]] == [
        ("raised", second.pk), ("cleared", first.pk)
    ]
    assert body["event"] == "digest" and body["events"][1]["alarm"]["state"] == "cleared"


def test_reminders_while_an_alarm_stays_active_and_unacknowledged(owner, device, receiver, start_notifier):
    target = destination(owner, url=receiver.url)
    rule = rule_to(owner, target, remind_every=600, notify_raised=False)
    notifier = start_notifier(digest_seconds=60)
    alarm = raise_alarm(rule, device.pk, notifier.now())
    notifier.advance(599)
    with pytest.raises(AssertionError):
        receiver.next(timeout=0.5)
    notifier.advance(1)
    _, _, body = receiver.next()
    assert body["event"] == "reminder" and body["alarm"]["id"] == alarm.pk
    notifier.advance(600)
    assert receiver.next()[2]["event"] == "reminder"
    lifecycle.acknowledge(alarm.pk, at=notifier.now(), by=owner)
    notifier.advance(600)
    with pytest.raises(AssertionError):
        receiver.next(timeout=1)
    assert Notification.objects.filter(event="reminder").count() == 2


def test_a_rule_sends_only_to_its_owners_destinations(owner, make_user, device, receiver, start_notifier):
    stranger = make_user(unique_id("stranger"))
    theirs = destination(stranger, url=receiver.url)
    rule = rule_to(owner, theirs)  # the rules API refuses this; the notifier does not trust it either
    start_notifier()
    raise_alarm(rule, device.pk, datetime.now(UTC))
    wait_until(lambda: AlarmChange.objects.get().notified_at, message="the change seen")
    assert not Notification.objects.exists()


def test_old_notifications_are_pruned_with_their_log(owner, device):
    from alarms.notify_worker import prune

    target = destination(owner, url="https://hooks.example.com/")
    now = datetime.now(UTC)
    old = Notification.objects.create(destination=target, event="raised", status=SENT,
                                      created=datetime(2020, 1, 1, tzinfo=UTC))
    DeliveryAttempt.objects.create(notification=old, ok=True, answer="200 OK")
    waiting = Notification.objects.create(destination=target, event="raised", created=datetime(2020, 1, 1, tzinfo=UTC))
    recent = Notification.objects.create(destination=target, event="raised", status=SENT, created=now)
    prune(datetime(2021, 1, 1, tzinfo=UTC))
    assert set(Notification.objects.values_list("pk", flat=True)) == {waiting.pk, recent.pk}
    assert not DeliveryAttempt.objects.exists()


# Two bridges at once (meaningful on PostgreSQL; SQLite serialises them).

def test_two_notifiers_make_and_send_each_notification_once(owner, make_device, receiver):
    devices = [make_device(unique_id("sensor"), owner) for _ in range(20)]
    targets = [destination(owner, url=receiver.url) for _ in range(2)]
    rule = rule_to(owner, *targets)
    now = datetime.now(UTC)
    for device in devices:
        raise_alarm(rule, device.pk, now)
    changes = list(AlarmChange.objects.values_list("id", flat=True))
    notifiers = [Notifier(allow_private=True, digest_seconds=60) for _ in range(2)]
    made, claimed = [[], []], [[], []]
    barrier = threading.Barrier(2)

    def work(slot):
        from alarms import notify

        try:
            barrier.wait(TIMEOUT)
            made[slot] = [notify.notify_change(change_id, now, 60) for change_id in changes]
            barrier.wait(TIMEOUT)
            notifiers[slot].clock = lambda: now.timestamp() + 60
            claimed[slot] = [n.pk for n in notifiers[slot].claim_due(100)]
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # Each change claimed by exactly one of them, and made into one single message per
    # destination plus one digest of the other 19.
    assert all((a is None) != (b is None) for a, b in zip(*made))
    for target in targets:
        single, digest = notifications(target)
        assert single.changes.count() == 1 and digest.changes.count() == 19
    assert sorted(claimed[0] + claimed[1]) == sorted(Notification.objects.values_list("pk", flat=True))
    assert set(Notification.objects.values_list("attempts", flat=True)) == {1}


# The real bridge.

@pytest.fixture(scope="module")
def smtp_server():
    box = Mailbox()
    box.controller.start()
    yield box
    box.controller.stop()


@pytest.fixture(scope="module")
def notifying_hub(django_db_setup, redis_server, mosquitto_server, smtp_server, tmp_path_factory):
    yield from running_hub(
        redis_server, mosquitto_server, tmp_path_factory.mktemp("hub"),
        webhook_allow_private="true", notify_retry_seconds=1, email_host="127.0.0.1", email_port=smtp_server.port,
        email_from="alarms@telehub.test",
    )


@pytest.mark.live
def test_the_bridge_delivers_what_waited_across_its_restart(notifying_hub, owner, device, smtp_server):
    hub = notifying_hub
    cookie = hub.login(owner.username, PASSWORD)
    receiver = Receiver()  # down at first
    made = hub.api("POST", "api/notification-destinations/", cookie,
                   {"kind": "webhook", "url": receiver.url, "secret": SECRET}).json()
    mail = hub.api("POST", "api/notification-destinations/", cookie, {"kind": "email", "to": ["ops@example.com"]})
    assert mail.status == 201
    rule = rule_to(owner, NotificationDestination.objects.get(pk=made["id"]),
                   NotificationDestination.objects.get(pk=mail.json()["id"]))
    alarm = raise_alarm(rule, device.pk, datetime.now(UTC), value=3)

    recipients, message = smtp_server.next()
    assert recipients == ["ops@example.com"] and message["From"] == "alarms@telehub.test"
    assert message["Subject"] == f"[Telehub] major alarm raised: Boiler offline on {device.pk}"

    def failed_tries():
        log = hub.api("GET", f"api/notification-destinations/{made['id']}/deliveries", cookie).json()
        return log if log and not log[0]["ok"] else None

    log = wait_until(failed_tries, message="a failed try in the delivery log")
    assert log[0]["notification"]["status"] == "pending"
    hub.bridge.stop()
    receiver.start()
    try:
        hub.start_bridge()
        _, signed, body = receiver.next(timeout=30)
        assert signed and body["event"] == "raised" and body["alarm"]["id"] == alarm.pk
        wait_until(lambda: Notification.objects.get(destination_id=made["id"]).status == SENT, message="sent")
    finally:
        receiver.stop()
