"""The web proxy's Prometheus metrics, one registry per app.

waitress runs the app in one process with many threads. prometheus_client's metrics are
thread-safe (each value has its lock) and live in that process's memory, so one registry holds
every request's figures; its multiprocess mode (a file per process, merged at scrape time) is
for servers that fork workers, such as gunicorn, and is not needed. Each app has a registry of
its own rather than the library's global one, so that several apps in one process (the tests)
never share or collide.

Buckets follow what `make bench` measures (docs/performance.md): uploads of ordinary photos take
tens to a few hundred milliseconds from 1 to 16 clients, a 12-megapixel photo up to seconds, and
the timeout is 60 s. The buckets are dense from 10 ms to 400 ms, where those and an SLO of 1 s
fall, so histogram_quantile() lands within ~15% there, and coarse beyond.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily

from frontend_server.upstream import CAUSES
from torchserve_client import Health

LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.02,
    0.03,
    0.04,
    0.05,
    0.06,
    0.08,
    0.1,
    0.125,
    0.15,
    0.2,
    0.25,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.0,
    4.0,
    8.0,
    15.0,
    30.0,
    60.0,
)
"""Seconds (see the module's docstring)."""
UPLOAD_BUCKETS = (*(2**n * 1024 for n in range(4, 16)), 40 * 2**20)
"""Bytes: 16 KiB to 32 MiB by doubling (a phone photo is 2-6 MB, the limit 20 MB), and the
server's cap of twice the limit."""
OUTCOMES = ("ok", "bad_input", "too_large", *CAUSES, "internal_error")
"""Every upload ends in exactly one: answered, refused for its content or size, or one of the
upstream failures (frontend_server.upstream.CAUSES), or a bug."""
REQUEST_DURATION = "petseg_proxy_request_duration_seconds"
LOAD_METRIC = "petseg_load_per_worker"
SEGMENT_ROUTE = "api.segment"
NO_VERSION = "none"
"""The model_version label of answers no model gave (a page, a refused upload)."""


def status_class(status: int) -> str:
    return f"{status // 100}xx"


def outcome(status: int, cause: str | None = None) -> str:
    """An upload's outcome from its status and, for a 5xx, the cause the proxy recorded."""
    if status < 400:
        return "ok"
    if status == 413:
        return "too_large"
    if status < 500:
        return "bad_input"
    return cause if cause in CAUSES else "internal_error"


class InFlight:
    """Calls to TorchServe under way now: the load the autoscalers follow (see
    TorchServeCollector), counted by the proxy because TorchServe 0.12 exports no queue depth."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0

    @contextlib.contextmanager
    def call(self) -> Iterator[None]:
        with self._lock:
            self.now += 1
        try:
            yield
        finally:
            with self._lock:
                self.now -= 1


@dataclass(frozen=True)
class Family:
    """One metric family as dashboards and alerts know it: a row of a table such as
    PROXY_FAMILIES, so that each name, help text and label set is written once, and ``declare``
    the one place that turns rows into prometheus_client metrics."""

    kind: type[Counter] | type[Gauge] | type[Histogram]
    name: str
    documentation: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] | None = None
    """A histogram's upper bounds; None for a counter or a gauge."""


def declare(registry: CollectorRegistry, families: dict[str, Family]) -> dict[str, Any]:
    """The metrics of a table of families, registered in ``registry``, by the table's keys."""
    metrics = {}
    for key, family in families.items():
        options = {} if family.buckets is None else {"buckets": family.buckets}
        metrics[key] = family.kind(
            family.name, family.documentation, family.labels, registry=registry, **options
        )
    return metrics


PROXY_FAMILIES = {
    "requests": Family(
        Histogram,
        REQUEST_DURATION,
        "Time from the app receiving a request (its body already buffered) to its answer",
        ("route", "status_class", "model_version"),
        LATENCY_BUCKETS,
    ),
    "upstream": Family(
        Histogram,
        "petseg_proxy_upstream_duration_seconds",
        "Time of one prediction call to TorchServe, queueing and token renewal included",
        buckets=LATENCY_BUCKETS,
    ),
    "upload_bytes": Family(
        Histogram,
        "petseg_proxy_upload_bytes",
        "Size of each POST /api/segment request body, multipart envelope included",
        buckets=UPLOAD_BUCKETS,
    ),
    "in_flight": Family(
        Gauge, "petseg_proxy_requests_in_flight", "Requests the app is working on now"
    ),
    "outcomes": Family(
        Counter,
        "petseg_proxy_uploads",
        "POST /api/segment requests by how they ended",
        ("outcome",),
    ),
    "renewals": Family(
        Counter,
        "petseg_proxy_token_renewals",
        "TorchServe keys renewed after TorchServe refused them (expired or rotated)",
        ("key",),
    ),
}
"""The proxy's own series (ProxyMetrics.series), in the order /metrics lists them."""


class ProxyMetrics:
    """The proxy's metrics (PROXY_FAMILIES, by its keys in ``series``) and the registry that
    exports them."""

    def __init__(self) -> None:
        disable_created_metrics()  # no *_created series: Prometheus would store them as gauges
        self.registry = CollectorRegistry()
        self.series = declare(self.registry, PROXY_FAMILIES)
        self.upstream_in_flight = InFlight()
        for name in OUTCOMES:  # every series exists from the start: rates and ratios work
            self.series["outcomes"].labels(name)
        for key in ("inference", "management"):
            self.series["renewals"].labels(key)
        ProcessCollector(registry=self.registry)

    def watch_torchserve(self, health: Callable[[], Health]) -> None:
        """Export TorchServe's state as ``health()`` reports it, asked at each scrape."""
        self.registry.register(TorchServeCollector(health, self.upstream_in_flight))

    @contextlib.contextmanager
    def upstream_call(self) -> Iterator[None]:
        """Around one prediction call to TorchServe: timed, and counted while under way."""
        with self.upstream_in_flight.call(), self.series["upstream"].time():
            yield

    def token_renewed(self, key: str) -> None:
        self.series["renewals"].labels(key).inc()

    def observe_request(self, route: str, status: int, version: str, seconds: float) -> None:
        self.series["requests"].labels(route, status_class(status), version).observe(seconds)

    def observe_upload(self, size: int, ending: str) -> None:
        self.series["upload_bytes"].observe(size)
        self.series["outcomes"].labels(ending).inc()


class TorchServeCollector:
    """TorchServe as the proxy sees it, at scrape time, through the same management call as
    GET /api/health (the proxy holds the management key; nothing of it is exported), and the
    load on it: the calls in flight per READY worker of the default version. That is the figure
    that predicts latency: a worker takes up to a batch (config/model-config.yaml's batchSize)
    at a time, so beyond that, requests wait in TorchServe's queue, and their wait grows with it.
    ``petseg cluster`` (petseg.fleet.autoscale) and the autoscaler of
    deploy/k8s/components/load-hpa scale on it."""

    def __init__(self, health: Callable[[], Health], in_flight: InFlight) -> None:
        self.health = health
        self.in_flight = in_flight

    def collect(self) -> Iterator[GaugeMetricFamily]:
        state = self.health()
        calls = self.in_flight.now
        yield GaugeMetricFamily(
            "petseg_proxy_upstream_in_flight",
            "Prediction calls to TorchServe under way now",
            value=calls,
        )
        yield GaugeMetricFamily(
            LOAD_METRIC,
            "Prediction calls under way per READY worker of the default version (all of them "
            "when none is ready): above the batch size, requests queue",
            value=calls / max(state.ready_workers, 1),
        )
        yield GaugeMetricFamily(
            "petseg_torchserve_up",
            "1 when TorchServe answers the proxy's management call",
            value=int(state.reachable),
        )
        yield GaugeMetricFamily(
            "petseg_torchserve_ready_workers",
            "READY workers of the model's default version",
            value=state.ready_workers,
        )
        yield GaugeMetricFamily(
            "petseg_torchserve_workers",
            "Workers of the model's default version, in any state",
            value=state.workers,
        )
        yield GaugeMetricFamily(
            "petseg_serving_state_applied",
            "1 once TorchServe's start applied the serving state (the instance is ready only then)",
            value=int(state.report is not None),
        )
        yield GaugeMetricFamily(
            "petseg_serving_state_problems",
            "Parts of the serving state TorchServe does not serve as declared (petseg status names "
            "them)",
            value=len(state.problems),
        )
