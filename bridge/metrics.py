"""The bridge's Prometheus metrics, served on HUB_BRIDGE_METRICS_PORT.

Most are read from the bridge's own counts at each scrape (BridgeCollector), so the hot path
counts nothing twice. The scrape runs on the HTTP server's thread, beside the event loop: it
only reads, and copies each dict in one step. docs/operations.md lists every metric.
"""
import logging
import time

from django.conf import settings
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from alarms.metrics import NOTIFICATIONS
from bridge.db_errors import PERMANENT_DB_ERRORS
from devices.metrics import COMMANDS
from hub.metrics import TaskCrashes
from telemetry.retention import RESOLUTIONS

logger = logging.getLogger("bridge")

# The bridge's own registry: the web processes' metrics, whose modules the bridge imports too,
# stay out of its answer.
registry = CollectorRegistry()
for collector in (ProcessCollector, PlatformCollector, GCCollector):
    collector(registry=registry)
registry.register(TaskCrashes())
registry.register(COMMANDS)
registry.register(NOTIFICATIONS)

FLUSH_SECONDS = Histogram(
    "telehub_bridge_flush_seconds", "Time to store one batch of readings (flushes that stored).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=registry,
)
STORE_FAILURES = Counter(
    "telehub_bridge_store_failures", "Database errors while storing, by kind: transient (connection, lock) "
    "or permanent (the data: DataError, IntegrityError).", ["kind"], registry=registry,
)
for kind in ("transient", "permanent"):
    STORE_FAILURES.labels(kind)


def failure_kind(error):
    """A database error's kind: permanent when retrying the same data cannot succeed."""
    return "permanent" if isinstance(error, PERMANENT_DB_ERRORS) else "transient"


def count_store_failure(error):
    kind = failure_kind(error)
    STORE_FAILURES.labels(kind).inc()
    return kind


def count_command_change(event):
    """Counts a command's new status from the live event that shows it (telemetry.events.command_event)."""
    status = event.get("command_status")
    if status is not None:
        COMMANDS.labels(status).inc()


class BridgeCollector(Collector):
    def __init__(self, bridge):
        self.bridge = bridge

    def collect(self):
        bridge = self.bridge
        counts = dict(bridge.counts)
        yield CounterMetricFamily("telehub_bridge_messages_received", "MQTT messages received from devices.",
                                  value=counts.get("received", 0))
        yield CounterMetricFamily("telehub_bridge_readings_stored", "Readings (one key's value) stored.",
                                  value=counts.get("stored", 0))
        rejected = CounterMetricFamily("telehub_bridge_messages_rejected",
                                       "Messages dropped, by reason (docs/protocol.md).", labels=["reason"])
        for reason, count in dict(bridge.rejects.counts).items():
            rejected.add_metric([reason], count)
        yield rejected
        yield CounterMetricFamily("telehub_bridge_live_events_published",
                                  "Live events the bridge sent to the web processes through Redis.",
                                  value=counts.get("published", 0))
        yield CounterMetricFamily("telehub_bridge_live_events_lost",
                                  "Live events given up: the channel layer failed, or too many waited.",
                                  value=counts.get("live_failed", 0))
        yield GaugeMetricFamily("telehub_bridge_readings_held", "Readings received and not yet stored.",
                                value=bridge.held_readings)
        yield GaugeMetricFamily("telehub_bridge_oldest_held_seconds",
                                "Age of the oldest reading received and not yet stored; 0 when none waits.",
                                value=bridge.oldest_held_age())
        yield GaugeMetricFamily("telehub_bridge_readings_held_limit", "HUB_BRIDGE_MAX_HELD_READINGS: holding this many, "
                                "the bridge stops reading from the broker.", value=bridge.max_held_readings)
        mqtt = bridge.mqtt
        yield GaugeMetricFamily("telehub_bridge_reading_paused", "1 while the bridge does not read from the broker, "
                                "holding its maximum: the backlog waits at the broker.",
                                value=int(mqtt is not None and mqtt.reading_paused))
        yield CounterMetricFamily("telehub_bridge_reading_pauses", "Times the bridge stopped reading from the broker.",
                                  value=counts.get("paused", 0))
        yield GaugeMetricFamily("telehub_bridge_broker_connected", "1 while connected to the broker.",
                                value=int(mqtt is not None and mqtt.connected.is_set()))
        yield CounterMetricFamily("telehub_bridge_peer_sessions_drained", "Sessions of dead bridges (their leases "
                                  "lapsed) this bridge drained and ended.", value=counts.get("peer_sessions_drained", 0))
        yield CounterMetricFamily("telehub_bridge_peer_messages_drained", "Messages this bridge took from dead "
                                  "bridges' sessions.", value=counts.get("peer_messages_drained", 0))
        yield from upkeep_metrics(bridge.upkeep)


def upkeep_metrics(upkeep):
    """The rollup job's and retention's progress (telemetry.upkeep)."""
    counts = dict(upkeep.counts)
    yield CounterMetricFamily("telehub_rollup_minutes", "Marked minutes the rollup job recomputed, with their hours.",
                              value=counts.get("minutes_rolled_up", 0))
    yield CounterMetricFamily("telehub_rollup_marks_dropped", "Marked minutes not rolled up: older than their "
                              "device's raw retention.", value=counts.get("marks_dropped", 0))
    yield GaugeMetricFamily("telehub_rollup_marked", "Minutes waiting for the rollup job after its last pass.",
                            value=upkeep.marked)
    expired = CounterMetricFamily("telehub_retention_deleted", "Rows deleted by retention, by resolution.",
                                  labels=["resolution"])
    for resolution in RESOLUTIONS:
        expired.add_metric([resolution], counts.get(f"expired_{resolution}", 0))
    yield expired
    for name, at in (("rollup", upkeep.rolled_at), ("retention", upkeep.retained_at)):
        yield GaugeMetricFamily(f"telehub_{name}_last_pass_age_seconds", f"Seconds since the {name} job last "
                                "completed a pass; -1 before the first.", value=-1 if at is None else time.monotonic() - at)


def serve(bridge):
    """Serves the bridge's metrics on HUB_BRIDGE_METRICS_ADDRESS and _PORT (0: not at all), from
    a thread of their own. A port in use is logged, not fatal: storing readings matters more
    than counting them."""
    address, port = settings.BRIDGE_METRICS_ADDRESS, settings.BRIDGE_METRICS_PORT
    if not port:
        return
    registry.register(BridgeCollector(bridge))
    try:
        start_http_server(port, address, registry=registry)
    except OSError as error:
        logger.error("metrics not served: cannot listen on %s:%d: %s", address, port, error)
        return
    logger.info("metrics on http://%s:%d/metrics", address, port)
