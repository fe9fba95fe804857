"""What `make bench` measures and with what: the models, the servers and the workload.

The in-process rows (bench/run.py), the served rows (bench/served.py) and the mask agreement
(bench/agreement.py) all take these as arguments; they live here so that none of those modules
imports another for its argument types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil

from bench.loadgen import Target


@dataclass
class Model:
    """A model under test and everything measured for it."""

    name: str
    export_dir: Path
    trained: bool
    results: dict = field(default_factory=dict)


@dataclass
class System:
    """A server under test: how to reach it and which processes it is made of."""

    name: str
    target: Target
    pids: list[int] = field(default_factory=list)

    def rss_mb(self) -> float:
        return round(sum(rss_mb(pid) for pid in self.pids), 1)


def rss_mb(pid: int) -> float:
    try:
        return psutil.Process(pid).memory_info().rss / 2**20
    except psutil.NoSuchProcess:
        return 0.0


@dataclass
class Workload:
    """What every server is measured with, and the fp32 eager masks its answers must match."""

    photos: dict[str, bytes]
    plan: list[tuple[str, int, int]]
    checks: dict[str, list[bytes]] = field(default_factory=dict)
    reference: dict[str, list[np.ndarray]] = field(default_factory=dict)
