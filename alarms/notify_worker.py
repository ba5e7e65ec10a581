"""The notifier: a supervised task of the bridge (bridge.bridge.Bridge.run) that makes
notifications of alarm changes (alarms.notify) and delivers them (alarms.transports).

Notifications live in the database: each is claimed for one try by a conditional update that
moves its next_attempt_at a lease ahead, so two bridges never try one at once, and one whose
bridge died mid-try is tried again once its lease runs out (deliveries are at least once).
Every try is logged as a DeliveryAttempt. A failed try is repeated after a doubling delay
(HUB_NOTIFY_RETRY_SECONDS up to MAX_RETRY_SECONDS) until one fails HUB_NOTIFY_GIVE_UP_SECONDS
after the notification was first due: then it is `failed`.

Sending runs in a pool of HUB_NOTIFY_CONCURRENCY threads, off the event loop: a slow receiver
holds one thread for at most a few HUB_NOTIFY_TIMEOUTs, and the bridge and the other
deliveries go on. Database work goes through channels' database thread in small steps (one
change, one claim), so the bridge's flushes interleave with it.
"""
import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import transaction
from django.db.models import F

from alarms import notify
from alarms.metrics import NOTIFICATIONS
from alarms.models import DeliveryAttempt, Notification
from alarms.transports import DeliveryFailed, transport_for

logger = logging.getLogger("alarms.notify")

PENDING, SENT, FAILED = Notification.Status.PENDING, Notification.Status.SENT, Notification.Status.FAILED
MAX_RETRY_SECONDS = 600
CHANGES_PER_PASS = 100
PRUNE_BATCH = 1000
ANSWER_LENGTH = DeliveryAttempt._meta.get_field("answer").max_length


def retry_delay(first_seconds, attempts):
    """Seconds before the next try after `attempts` failed ones: doubling, capped."""
    return min(MAX_RETRY_SECONDS, first_seconds * 2 ** (attempts - 1))


class Notifier:
    poll_seconds = 1.0
    remind_every_seconds = 5.0
    prune_every_seconds = 3600.0

    def __init__(self, *, concurrency=4, timeout=10, retry_seconds=10, give_up_seconds=3600, digest_seconds=60,
                 keep_days=30, allow_private=False, clock=time.time):
        self.concurrency = concurrency
        self.timeout = timeout
        self.retry_seconds = retry_seconds
        self.give_up = timedelta(seconds=give_up_seconds)
        self.digest_seconds = digest_seconds
        self.keep = timedelta(days=keep_days)
        self.allow_private = allow_private
        self.clock = clock
        # A try's lease: longer than a try can take (connect, send, read, each bounded).
        self.lease = timedelta(seconds=4 * timeout + 30)
        self.passed_at = time.monotonic()  # when run() last completed a pass

    @classmethod
    def from_settings(cls):
        return cls(
            concurrency=settings.NOTIFY_CONCURRENCY, timeout=settings.NOTIFY_TIMEOUT,
            retry_seconds=settings.NOTIFY_RETRY_SECONDS, give_up_seconds=settings.NOTIFY_GIVE_UP_SECONDS,
            digest_seconds=settings.NOTIFY_DIGEST_SECONDS, keep_days=settings.NOTIFY_KEEP_DAYS,
            allow_private=settings.WEBHOOK_ALLOW_PRIVATE,
        )

    def now(self):
        return datetime.fromtimestamp(self.clock(), UTC)

    async def run(self):
        """Makes and delivers notifications until cancelled."""
        executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix="notify")
        in_flight = {}  # task -> the notification it tries
        reminded = pruned = float("-inf")
        self.passed_at = time.monotonic()
        try:
            while True:
                await self.make_notifications()
                if time.monotonic() - reminded >= self.remind_every_seconds:
                    await self.make_reminders()
                    reminded = time.monotonic()
                if time.monotonic() - pruned >= self.prune_every_seconds:
                    await database_sync_to_async(prune)(self.now() - self.keep)
                    pruned = time.monotonic()
                free = self.concurrency - len(in_flight)
                if free > 0:
                    for notification in await database_sync_to_async(self.claim_due)(free):
                        in_flight[asyncio.create_task(self.deliver(notification, executor))] = notification.pk
                if in_flight:
                    done, _ = await asyncio.wait(in_flight, timeout=self.poll_seconds,
                                                 return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        del in_flight[task]
                        task.result()  # a database error recording a try: the supervisor restarts us
                else:
                    await asyncio.sleep(self.poll_seconds)
                self.passed_at = time.monotonic()
        finally:
            for task in in_flight:
                task.cancel()
            executor.shutdown(wait=False, cancel_futures=True)
            if in_flight:
                # Due again at once rather than when their lease ends: the next run (or the next
                # bridge) tries them, even if a try cut short here did reach its receiver.
                await database_sync_to_async(release)(list(in_flight.values()), self.now())

    def stalled(self, seconds):
        """Why the notifier is not making progress, or None: it has completed a pass within
        `seconds` (the bridge's heartbeat)."""
        since = time.monotonic() - self.passed_at
        if since > seconds + self.poll_seconds:
            return f"the alarm notifier has not completed a pass for {since:.0f} s"
        return None

    async def make_notifications(self):
        """Makes the notifications of up to CHANGES_PER_PASS changes, one change at a time."""
        for change_id in await database_sync_to_async(notify.unnotified_changes)(CHANGES_PER_PASS):
            await database_sync_to_async(notify.notify_change)(change_id, self.now(), self.digest_seconds)

    async def make_reminders(self):
        for alarm_id in await database_sync_to_async(notify.due_reminders)(self.now()):
            await database_sync_to_async(notify.remind)(alarm_id, self.now(), self.digest_seconds)

    def claim_due(self, limit):
        """Claims up to `limit` due notifications for one try each; a digest's body is written
        at its first claim, once no event can join it any more."""
        now = self.now()
        due = Notification.objects.filter(status=PENDING, next_attempt_at__lte=now).order_by("next_attempt_at", "id")
        claimed = []
        for notification_id in due.values_list("id", flat=True)[:limit * 2]:
            with transaction.atomic():
                if not Notification.objects.filter(pk=notification_id, status=PENDING, next_attempt_at__lte=now).update(
                    attempts=F("attempts") + 1, next_attempt_at=now + self.lease
                ):
                    continue  # another bridge took it
                notification = Notification.objects.select_related("destination").get(pk=notification_id)
                if notification.event == Notification.DIGEST and notification.attempts == 1:
                    notification.body = notify.digest_body(notification)
                    notification.save(update_fields=["body"])
            claimed.append(notification)
            if len(claimed) == limit:
                break
        return claimed

    async def deliver(self, notification, executor):
        """One try, in a thread of `executor`, and its outcome recorded."""
        transport = transport_for(notification.destination, self.timeout, self.allow_private)
        try:
            answer = await asyncio.get_running_loop().run_in_executor(executor, transport.send, notification.body)
            ok = True
        except DeliveryFailed as failure:
            answer, ok = str(failure), False
        except Exception as error:  # a bug or an unforeseen error: logged, and tried again like any failure
            logger.exception("notification %d: the %s transport crashed", notification.pk, notification.destination.kind)
            answer, ok = f"error: {error!r}", False
        outcome = await database_sync_to_async(self.record)(notification, ok, answer[:ANSWER_LENGTH])
        NOTIFICATIONS.labels(outcome).inc()

    def record(self, notification, ok, answer):
        """Logs a try and sets what follows: sent, another try later, or failed. Returns which."""
        now = self.now()
        with transaction.atomic():
            DeliveryAttempt.objects.create(notification=notification, at=now, ok=ok, answer=answer)
            mine = Notification.objects.filter(pk=notification.pk, status=PENDING)
            if ok:
                mine.update(status=SENT, sent_at=now)
                return "sent"
            if now - notification.scheduled_at >= self.give_up:
                mine.update(status=FAILED)
                logger.error("notification %d to destination %d failed after %d tries, given up: %s",
                             notification.pk, notification.destination_id, notification.attempts, answer)
                return "failed"
            delay = retry_delay(self.retry_seconds, notification.attempts)
            mine.update(next_attempt_at=now + timedelta(seconds=delay))
        logger.warning("notification %d to destination %d: try %d failed, again in %d s: %s",
                       notification.pk, notification.destination_id, notification.attempts, delay, answer)
        return "retry"


def release(notification_ids, now):
    Notification.objects.filter(pk__in=notification_ids, status=PENDING).update(next_attempt_at=now)


def prune(before):
    """Deletes sent and failed notifications created before `before`, with their delivery log."""
    done = Notification.objects.filter(status__in=[SENT, FAILED], created__lt=before)
    while ids := list(done.values_list("id", flat=True)[:PRUNE_BATCH]):
        Notification.objects.filter(pk__in=ids).delete()
