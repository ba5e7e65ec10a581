"""Alarm evaluation in the bridge: thresholds on each flush's readings, timers for the rest.

The flush hands the readings it stored to `readings_stored()`, which only queues them (a
bounded number of flushes; past it the oldest give way, counted): evaluation runs in a
supervised task of its own, after the store's transaction, so it can neither stop nor redo a
flush. It judges readings in memory against the rules cached per device, and writes only
when something changes: a raise, a clear, a condition starting or ending for `for_seconds`.
Further crossings of an active alarm are added up and written once per tick.

Each change is conditional in the database (alarms.lifecycle, alarms.changes), and what this
bridge believes (active alarms, pending conditions) is reloaded every STATE_SECONDS: another
bridge on `$share` may hold the same device's other readings. A reading that ends an alarm or
a pending condition is remembered for a while, so that one raised elsewhere from an older
reading is cleared at the next reload. Times are the readings' own (epoch ms).
"""
import asyncio
import logging
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor

from channels.db import database_sync_to_async
from django.utils import timezone

from alarms import changes, live
from alarms.conditions import NUMBERS, ends_after_breach, summarize
from alarms.rule_cache import Rules, load_rules, rules_version
from hub.tasks import crashes, start_supervised
from telemetry.events import to_ms

logger = logging.getLogger("alarms")

TICK_SECONDS = 0.25  # for_seconds running out, crossings written
STATE_SECONDS = 0.5  # active alarms and pending conditions reloaded; silence and offline checked
RULES_SECONDS = 1.0  # have the rules changed?
RULES_MAX_AGE_SECONDS = 60.0  # loaded again anyway (a device given to another owner changes no rule)
FORGET_SECONDS = 300.0  # readings that ended something, remembered for reconciling
MAX_WAITING_FLUSHES = 1000


class AlarmEvaluator:
    def __init__(self, publish):
        self.publish = publish  # the bridge's LiveSender.publish, on the loop's thread
        self.rules = Rules()
        self.counts = Counter()  # flushes evaluated and dropped, changes made, failures
        self._flushes = deque()
        self._ready = asyncio.Event()
        self._rules_loaded = asyncio.Event()  # flushes stored before the first load wait for it
        # The timers' frequent reads go through a thread and connection of their own, so they
        # never wait for, or hold up, the flush in the bridge's database thread.
        self._reads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alarm-reads")
        self.active = {}  # (rule id, device id) -> (alarm id, last_at ms) of threshold alarms
        self.pending = {}  # (rule id, device id) -> (since ms, value) of conditions short of for_seconds
        self.ended = {}  # (rule id, device id) -> newest reading here that ends its alarm
        self.unmet = {}  # (rule id, device id) -> newest reading here that does not meet its rule
        self.crossings = {}  # (rule id, device id) -> [count, value, ts] to add to its active alarm
        self._rules_checked_at = self._rules_read_at = self._state_read_at = 0.0
        self._forgotten_at = self._ticked_at = time.monotonic()

    def start(self):
        """The evaluator's supervised tasks; alarm frames of this process go out through the
        bridge's live sender from now on."""
        loop = asyncio.get_running_loop()
        self._ticked_at = time.monotonic()
        live.publish_with(lambda event: loop.call_soon_threadsafe(self.publish, event))
        return [start_supervised("alarm_evaluation", self._evaluate_forever),
                start_supervised("alarm_timers", self._tick_forever)]

    def readings_stored(self, samples, device_ids):
        """The flush's hook: queues its stored samples ({device id: samples}) and the devices
        they are of (neither changed afterwards), unless no device has a threshold rule.
        Constant work per flush (evaluation looks up each device's rules), no database, never
        raises."""
        if self._rules_loaded.is_set() and not self.rules.thresholds:
            return
        if len(self._flushes) >= MAX_WAITING_FLUSHES:
            self._flushes.popleft()
            self.counts["dropped"] += 1
        self._flushes.append((time.monotonic(), samples, device_ids))
        self._ready.set()

    def stalled(self, seconds):
        """Why evaluation is not making progress, or None: a timer pass has completed, and no
        flush has waited to be evaluated, for more than `seconds` (the bridge's heartbeat)."""
        now = time.monotonic()
        if now - self._ticked_at > seconds + TICK_SECONDS:
            return f"the alarm timers have not completed a pass for {now - self._ticked_at:.0f} s"
        if self._flushes and now - self._flushes[0][0] > seconds:
            return f"a flush has waited {now - self._flushes[0][0]:.0f} s for alarm evaluation"
        return None

    async def drain(self, timeout):
        """Evaluates what waits, for at most `timeout` seconds (the bridge is stopping)."""
        try:
            async with asyncio.timeout(timeout):
                while self._flushes and self._rules_loaded.is_set():
                    await self._evaluate_one()
        except TimeoutError:
            logger.warning("stopping: %d flushes left unevaluated", len(self._flushes))

    # Thresholds, on each flush.

    async def _evaluate_forever(self):
        await self._rules_loaded.wait()
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._flushes:
                await self._evaluate_one()

    async def _evaluate_one(self):
        _, stored, device_ids = self._flushes.popleft()
        try:
            changes_to_make = []
            thresholds, active, pending, ended, unmet = self.rules.thresholds, self.active, self.pending, self.ended, self.unmet
            for device_id in device_ids:
                rules = thresholds.get(device_id)
                if rules is None:
                    continue
                samples = stored[device_id]
                for rule in rules:
                    if len(samples) == 1:
                        # The common case, inline (it is most of evaluation's cost): one reading
                        # that does not meet a rule with nothing active or pending. The same
                        # judgement as conditions.summarize() and _decide() make.
                        ts, value = samples[0].ts, samples[0].values.get(rule.key)
                        if value.__class__ not in NUMBERS:
                            continue
                        pair = (rule.id, device_id)
                        if not rule.compare(value, rule.value) and pair not in active and pair not in pending:
                            if ts > unmet.get(pair, 0):
                                unmet[pair] = ts
                            if not rule.compare(value, rule.ends_past) and ts > ended.get(pair, 0):
                                ended[pair] = ts
                            continue
                    summary = summarize(rule, samples)
                    if summary is not None:
                        self._decide(rule, device_id, summary, changes_to_make)
            await self._make(changes_to_make)
            self.counts["evaluated"] += 1
        except Exception:
            self._failed("evaluating a flush")

    def _decide(self, rule, device_id, summary, changes_to_make):
        pair = (rule.id, device_id)
        if summary.last_ended_ts is not None:
            self.ended[pair] = max(self.ended.get(pair, 0), summary.last_ended_ts)
        if summary.last_unmet_ts is not None:
            self.unmet[pair] = max(self.unmet.get(pair, 0), summary.last_unmet_ts)
        active = pair in self.active
        ends = ends_after_breach(summary)
        raises = summary.breaches and (active or not rule.for_seconds)
        if raises:
            if active and ends is None:
                self._add_crossings(pair, summary)
            else:
                changes_to_make.append(("raise", pair, summary.breaches, summary.last_breach_value, summary.last_breach_ts))
        if ends is not None and (active or raises):
            self.crossings.pop(pair, None)  # older than the reading that ends the alarm
            changes_to_make.append(("clear", pair, ends))
        if rule.for_seconds and not active:
            held = self.pending.get(pair)
            if held is not None and summary.last_unmet_ts is not None and summary.last_unmet_ts > held[0]:
                changes_to_make.append(("drop", pair, summary.last_unmet_ts))
                held = None
            if held is None and summary.run_since is not None:
                changes_to_make.append(("hold", pair, summary.run_since, summary.run_value))

    def _add_crossings(self, pair, summary):
        known = self.crossings.get(pair)
        if known is None:
            self.crossings[pair] = [summary.breaches, summary.last_breach_value, summary.last_breach_ts]
        else:
            known[0] += summary.breaches
            if summary.last_breach_ts >= known[2]:
                known[1:] = [summary.last_breach_value, summary.last_breach_ts]

    # Timers.

    async def _tick_forever(self):
        while True:
            started = time.monotonic()
            await self._tick(started)
            self._ticked_at = time.monotonic()
            await asyncio.sleep(max(0.0, TICK_SECONDS - (time.monotonic() - started)))

    async def _tick(self, now):
        if now - self._rules_checked_at >= RULES_SECONDS:
            self._rules_checked_at = now
            version = await self._read(rules_version)
            if version != self.rules.version or now - self._rules_read_at >= RULES_MAX_AGE_SECONDS:
                self.rules = await self._read(load_rules)
                self._rules_read_at = now
                self._rules_loaded.set()
                logger.info("alarm rules loaded: %d, thresholds on %d devices",
                             len(self.rules.by_id), len(self.rules.thresholds))
        if not self.rules.by_id:
            return
        changes_to_make = []
        if now - self._state_read_at >= STATE_SECONDS:
            self._state_read_at = now
            await self._reload(changes_to_make)
            if self.rules.timed:
                raised, cleared = await database_sync_to_async(changes.check_timed)(self.rules.timed, timezone.now())
                self.counts["raised"] += raised
                self.counts["cleared"] += cleared
        if now - self._forgotten_at >= FORGET_SECONDS:
            self._forget()
        now_ms = int(time.time() * 1000)
        for pair, (since, value) in self.pending.items():
            rule = self.rules.by_id.get(pair[0])
            if rule is not None and now_ms >= since + rule.for_seconds * 1000:
                changes_to_make.append(("due", pair, since, value))
        for pair, (count, value, ts) in self.crossings.items():
            changes_to_make.append(("raise", pair, count, value, ts))
        self.crossings = {}
        await self._make(changes_to_make)

    async def _reload(self, changes_to_make):
        """Takes the database's word on active threshold alarms and pending conditions (another
        bridge may have changed them), and ends those that readings seen here ended."""
        if not self.rules.thresholds:
            self.active, self.pending = {}, {}
            return
        self.active, self.pending = await self._read(changes.threshold_state)
        for pair, (_, last_at) in self.active.items():
            if self.ended.get(pair, 0) > last_at:
                changes_to_make.append(("clear", pair, self.ended[pair]))
        for pair, (since, _) in self.pending.items():
            if self.unmet.get(pair, 0) > since:
                changes_to_make.append(("drop", pair, self.unmet[pair]))

    def _read(self, function):
        return database_sync_to_async(function, thread_sensitive=False, executor=self._reads)()

    def _forget(self):
        self._forgotten_at = time.monotonic()
        oldest = int((time.time() - FORGET_SECONDS) * 1000)
        self.ended = {pair: ts for pair, ts in self.ended.items() if ts >= oldest}
        self.unmet = {pair: ts for pair, ts in self.unmet.items() if ts >= oldest}

    # Changes, in the database thread; then what this bridge believes.

    async def _make(self, changes_to_make):
        if not changes_to_make:
            return
        results = await database_sync_to_async(self._make_in_database)(changes_to_make)
        for (kind, pair, *args), result in zip(changes_to_make, results):
            if result is FAILED:
                continue
            if kind in ("raise", "due"):
                if kind == "due":
                    self.pending.pop(pair, None)
                if result is not None:
                    self.active[pair] = (result.pk, to_ms(result.last_at))
            elif kind == "clear":
                self.active.pop(pair, None)
            elif kind == "hold" and result is not None:
                self.pending[pair] = (result, args[1])
            elif kind == "drop":
                self.pending.pop(pair, None)

    def _make_in_database(self, changes_to_make):
        results = []
        for kind, (rule_id, device_id), *args in changes_to_make:
            try:
                rule = self.rules.by_id[rule_id]
                if kind == "raise":
                    result = changes.raise_crossings(rule, device_id, *args)
                elif kind == "due":
                    result = changes.raise_due(rule, device_id, *args)
                elif kind == "clear":
                    result = changes.clear_ended(rule_id, device_id, *args)
                elif kind == "hold":
                    result = changes.hold_pending(rule_id, device_id, *args)
                else:
                    result = changes.drop_pending(rule_id, device_id, *args)
            except Exception:
                self._failed(f"making a {kind} change for rule {rule_id} on {device_id}")
                result = FAILED
            self.counts[kind] += 1
            results.append(result)
        return results

    def _failed(self, what):
        crashes["alarm_evaluation"] += 1
        self.counts["failed"] += 1
        logger.exception("alarm evaluation failed %s; the readings are stored, evaluation carries on", what,
                         extra={"task": "alarm_evaluation"})


FAILED = object()
