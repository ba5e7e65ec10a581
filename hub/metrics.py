"""Prometheus metrics of a web process, at /metrics, and the supervised tasks' crashes that
every process exports.

Each daphne process serves its own counts (scrape each one); the bridge serves its own on
HUB_BRIDGE_METRICS_PORT (bridge/metrics.py). docs/operations.md lists every metric.
"""
import ipaddress

from django.conf import settings
from django.http import HttpResponse, HttpResponseForbidden
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from hub import tasks

# A *_created series beside every counter doubles what Prometheus stores, for a time it does not need.
disable_created_metrics()


class TaskCrashes(Collector):
    """hub.tasks' count of crashes by task, read at each scrape."""

    def collect(self):
        family = CounterMetricFamily(
            "telehub_task_crashes", "Times a supervised task raised (or returned) and was restarted.", labels=["task"]
        )
        for name, count in dict(tasks.crashes).items():  # dict(): one step, while tasks may add to it
            family.add_metric([name], count)
        yield family


REGISTRY.register(TaskCrashes())


def metrics(request):
    """The process's metrics, for loopback and HUB_METRICS_ALLOWED_IPS only."""
    if not may_scrape(request):
        return HttpResponseForbidden("metrics are for loopback and HUB_METRICS_ALLOWED_IPS only\n")
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)


def may_scrape(request):
    """Whether every address the request names is loopback or allowed: the client daphne saw and
    each address in X-Forwarded-For.

    Behind the TLS proxy, daphne's --proxy-headers makes the client the first address of
    X-Forwarded-For, which the client may have written itself if the proxy appends to the header
    rather than replacing it; the proxy's own addition, the real client, comes later. Asking that
    all of them be allowed means a forged header cannot open /metrics, whichever the proxy does.
    """
    named = [request.META.get("REMOTE_ADDR", "")]
    if "HTTP_X_FORWARDED_FOR" in request.META:
        named += request.META["HTTP_X_FORWARDED_FOR"].split(",")
    networks = [ipaddress.ip_network(network) for network in settings.METRICS_ALLOWED_IPS]
    return all(_allowed(text.strip(), networks) for text in named)


def _allowed(text, networks):
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback or any(address in network for network in networks)
