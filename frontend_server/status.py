"""Live figures for operators from the proxy's own metrics: uploads per minute, p95 latency,
the share of 5xx answers, TorchServe's ready workers and the versions that answered.

They cover the last minute. Each look keeps a snapshot of the counters and compares with the
newest snapshot at least a minute old (before there is one, with the counters at the app's
start, and the window says so); nothing runs between looks, and no management call is made
beyond the one the metrics' TorchServe collector makes anyway.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from frontend_server.metrics import NO_VERSION, REQUEST_DURATION, SEGMENT_ROUTE, ProxyMetrics

WINDOW_S = 60.0
KEEP_S = 15 * 60.0
"""Snapshots older than this are dropped."""
SNAPSHOT_EVERY_S = 1.0
"""At most one snapshot a second is kept, however often the page is looked at."""


@dataclass(frozen=True)
class Totals:
    """The counters of POST /api/segment at one moment."""

    at: float
    uploads: float = 0.0
    errors: float = 0.0
    """Answers with a 5xx status."""
    buckets: dict[float, float] = field(default_factory=dict)
    """Cumulative count of successful uploads per bucket bound (``le``)."""
    versions: Counter = field(default_factory=Counter)
    """Successful uploads per model version."""
    version_buckets: dict[str, dict[float, float]] = field(default_factory=dict)
    """``buckets`` of each model version (a rollout's two versions side by side)."""


def read(metrics: ProxyMetrics, at: float) -> tuple[Totals, dict[str, float]]:
    """The upload totals and every label-less sample (gauges such as the ready workers), in one
    pass over the registry: one pass, one call to TorchServe."""
    plain: dict[str, float] = {}
    uploads = errors = 0.0
    buckets: dict[float, float] = Counter()
    versions: Counter = Counter()
    version_buckets: dict[str, Counter] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            labels = sample.labels
            if not labels:
                plain[sample.name] = sample.value
            elif family.name == REQUEST_DURATION and labels["route"] == SEGMENT_ROUTE:
                status = labels["status_class"]
                if sample.name.endswith("_count"):
                    uploads += sample.value
                    errors += sample.value * (status == "5xx")
                    answered = status == "2xx" and labels["model_version"] != NO_VERSION
                    versions[labels["model_version"]] += sample.value * answered
                elif sample.name.endswith("_bucket") and status == "2xx":
                    buckets[float(labels["le"])] += sample.value
                    by_version = version_buckets.setdefault(labels["model_version"], Counter())
                    by_version[float(labels["le"])] += sample.value
    totals = Totals(at, uploads, errors, dict(buckets), versions, version_buckets)
    return totals, plain


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus's histogram_quantile() over cumulative bucket counts: linear within the
    bucket the rank falls in; None without observations."""
    bounds = sorted(buckets)
    if not bounds or not buckets[bounds[-1]]:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def milliseconds(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1000)


def difference(now: Totals, then: Totals) -> Totals:
    return Totals(
        now.at - then.at,
        now.uploads - then.uploads,
        now.errors - then.errors,
        {le: n - then.buckets.get(le, 0.0) for le, n in now.buckets.items()},
        now.versions - then.versions,
        {
            version: {
                le: n - then.version_buckets.get(version, {}).get(le, 0.0) for le, n in b.items()
            }
            for version, b in now.version_buckets.items()
        },
    )


class StatusWindow:
    """Snapshots of the totals, and the figures of the last minute."""

    def __init__(self, metrics: ProxyMetrics, clock: Callable[[], float] = time.monotonic):
        self.metrics = metrics
        self.clock = clock
        self.snapshots: deque[Totals] = deque([Totals(clock())])
        self._lock = threading.Lock()  # waitress serves looks from several threads

    def figures(self) -> dict[str, Any]:
        now, plain = read(self.metrics, self.clock())
        with self._lock:
            then = self._baseline(now.at)
            if now.at - self.snapshots[-1].at >= SNAPSHOT_EVERY_S:
                self.snapshots.append(now)
        window = difference(now, then)
        p95 = quantile(0.95, window.buckets)
        return {
            "window_s": round(window.at),
            "uploads_per_minute": round(window.uploads * 60 / max(window.at, 1.0), 1),
            "p95_ms": milliseconds(p95),
            "errors_percent": round(100 * window.errors / max(window.uploads, 1), 1),
            "in_flight": int(plain.get("petseg_proxy_requests_in_flight", 0)),
            "torchserve_up": bool(plain.get("petseg_torchserve_up")),
            "ready_workers": int(plain.get("petseg_torchserve_ready_workers", 0)),
            "workers": int(plain.get("petseg_torchserve_workers", 0)),
            "versions": [v for v, n in window.versions.most_common() if n > 0],
            "by_version": {
                version: {
                    "uploads_per_minute": round(count * 60 / max(window.at, 1.0), 1),
                    "p95_ms": milliseconds(quantile(0.95, window.version_buckets[version])),
                }
                for version, count in window.versions.most_common()
                if count > 0
            },
        }

    def _baseline(self, at: float) -> Totals:
        """The newest snapshot at least ``WINDOW_S`` old, else the oldest one."""
        while len(self.snapshots) > 1 and at - self.snapshots[1].at >= KEEP_S:
            self.snapshots.popleft()
        old_enough = [s for s in self.snapshots if at - s.at >= WINDOW_S]
        return old_enough[-1] if old_enough else self.snapshots[0]
