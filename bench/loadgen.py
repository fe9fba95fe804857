"""A bounded closed-loop HTTP load: N requests from C concurrent clients, latency percentiles.

Used by the serving measurements; it runs in its own process so the client's CPU time is not
charged to the server's Python workers (the GIL is not shared).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests


@dataclass
class LoadResult:
    requests: int
    seconds: float
    latencies_ms: list[float]
    statuses: Counter

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]

    def summary(self) -> dict[str, float]:
        return {
            "requests": self.requests,
            "images_per_s": round(self.throughput, 2),
            "p50_ms": round(self.percentile(50), 1),
            "p95_ms": round(self.percentile(95), 1),
            "p99_ms": round(self.percentile(99), 1),
            "mean_ms": round(statistics.fmean(self.latencies_ms), 1),
            "errors": sum(n for code, n in self.statuses.items() if code >= 400),
        }


def run_load(send: Callable[[requests.Session, int], int], total: int, concurrency: int,
             warmup: int = 2) -> LoadResult:  # fmt: skip
    """Call ``send(session, i)`` ``total`` times from ``concurrency`` threads."""
    local = threading.local()

    def one(i: int) -> tuple[int, float]:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        start = time.perf_counter()
        status = send(session, i)
        return status, (time.perf_counter() - start) * 1000

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(warmup * concurrency)))
        start = time.perf_counter()
        outcomes = list(pool.map(one, range(total)))
        seconds = time.perf_counter() - start
    return LoadResult(total, seconds, [ms for _, ms in outcomes],
                      Counter(status for status, _ in outcomes))  # fmt: skip
