"""A bounded closed-loop HTTP load: N requests from C concurrent clients, latency percentiles.

:func:`measure` runs the clients in a process of their own, so their CPU time (requests,
multipart encoding) is not charged to the server under test through a shared GIL.
"""

from __future__ import annotations

import functools
import multiprocessing
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import requests

from torchserve_client import TorchServe

TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Target:
    """A plain HTTP endpoint taking the JPEG as the raw body, or in a multipart file field."""

    url: str
    file_field: str | None = None

    def send(self, session: requests.Session, body: bytes) -> requests.Response:
        if self.file_field:
            files = {self.file_field: ("photo.jpg", body, "image/jpeg")}
            return session.post(self.url, files=files, timeout=TIMEOUT_S)
        return session.post(self.url, data=body, timeout=TIMEOUT_S)


@dataclass(frozen=True)
class TorchServeTarget:
    """TorchServe's inference API, called the way every petseg tool calls it: the client."""

    inference_url: str
    management_url: str
    key_file: Path

    def send(self, session: requests.Session, body: bytes) -> requests.Response:
        """``session`` is unused: the client keeps a connection pool per thread itself."""
        return _client(self).predict(body, "image/jpeg")


@functools.cache
def _client(target: TorchServeTarget) -> TorchServe:
    """One client per target and process (targets travel to the load process as data)."""
    return TorchServe(
        target.inference_url, target.management_url, target.key_file, timeout=TIMEOUT_S
    )


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
            "errors": sum(n for code, n in self.statuses.items() if not 200 <= code < 300),
        }


def run_load(
    send: Callable[[requests.Session, int], int], total: int, concurrency: int, warmup: int = 2
) -> LoadResult:
    """Call ``send(session, i)`` ``total`` times from ``concurrency`` threads.

    ``warmup`` rounds of ``concurrency`` requests go first, untimed: connections, caches and a
    server's lazy start-up are not what we measure. A request that raises counts as status 0.
    """
    local = threading.local()

    def one(i: int) -> tuple[int, float]:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        start = time.perf_counter()
        try:
            status = send(session, i)
        except requests.RequestException:
            status = 0
        return status, (time.perf_counter() - start) * 1000

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(warmup * concurrency)))
        start = time.perf_counter()
        outcomes = list(pool.map(one, range(total)))
        seconds = time.perf_counter() - start
    return LoadResult(
        total, seconds, [ms for _, ms in outcomes], Counter(status for status, _ in outcomes)
    )


def _load_process(
    target: Target | TorchServeTarget,
    body: bytes,
    total: int,
    concurrency: int,
    warmup: int,
    results,
) -> None:
    def send(session: requests.Session, _: int) -> int:
        return target.send(session, body).status_code

    results.put(run_load(send, total, concurrency, warmup))


def measure(
    target: Target | TorchServeTarget, body: bytes, total: int, concurrency: int, warmup: int = 1
) -> LoadResult:
    """:func:`run_load` against ``target`` from a separate client process."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    client = context.Process(
        target=_load_process, args=(target, body, total, concurrency, warmup, results)
    )
    client.start()
    result = results.get()
    client.join()
    return result
