"""The local fleet's autoscaler: `petseg cluster start --min N --max M`, run by the keeper.

It follows the signal a HorizontalPodAutoscaler follows on Kubernetes
(deploy/k8s/components/load-hpa): each proxy's ``petseg_load_per_worker``, the prediction
calls under way per READY worker (frontend_server.metrics.TorchServeCollector says why that
figure predicts latency). Once a second the keeper gives it a look; it takes the mean over the
instances that answer, averages it over ``WINDOW_S``, and asks for the HPA's count,
ceil(instances x load / target), between min and max, with the HPA's 10 % tolerance:

- out at once, one instance at a time: the new one applies the serving state and joins nginx
  only once ready (petseg.fleet.cluster.add_member), so it takes no upload before it can answer;
- in only when every count asked for over ``scale_in_after_s`` was lower (the HPA's scale-down
  stabilization): the newest instance is drained first, marked down in nginx and given the
  time to finish what it holds (petseg.fleet.cluster.retire_member), so no upload is lost.

After each change the window starts again: the fleet's new size is judged on its own figures.
A look where no proxy answers changes nothing (a fleet being healed is not a quiet one).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass

from frontend_server.metrics import LOAD_METRIC
from petseg.fleet import cluster as fleet
from petseg.fleet.proxy_gauges import gauge

log = logging.getLogger("petseg.fleet.autoscale")
TARGET_LOAD = 3.0
"""Calls under way per READY worker the fleet aims at: half of a worker's batch
(config/model-config.yaml: batchSize 6), so a burst fills batches before it queues. The same
number is the target of deploy/k8s/components/load-hpa (its test checks that)."""
TOLERANCE = 0.1
"""The HPA's default: no change while the load is within 10 % of the target."""
WINDOW_S = 10.0
SCALE_IN_AFTER_S = 60.0


@dataclass(frozen=True)
class Scaling:
    """The bounds and pace, as cluster.json records them (the keeper reads them there)."""

    min: int
    max: int
    target: float = TARGET_LOAD
    scale_in_after_s: float = SCALE_IN_AFTER_S

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.max:
            raise ValueError(f"--min {self.min} --max {self.max}: need 1 <= min <= max")
        if self.target <= 0 or self.scale_in_after_s < 0:
            raise ValueError("the target load must be above 0 and the scale-in delay not below")

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def wanted(instances: int, load: float, scaling: Scaling) -> int:
    """The HPA's count for ``load`` (the fleet's mean per worker), within the bounds."""
    ratio = load / scaling.target
    count = instances if abs(ratio - 1) <= TOLERANCE else math.ceil(instances * ratio)
    return min(max(count, scaling.min), scaling.max)


class Autoscaler:
    def __init__(
        self,
        scaling: Scaling,
        load_of: Callable[[fleet.Member], float | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.scaling = scaling
        self.load_of = load_of or (lambda member: gauge(member.operator_url, LOAD_METRIC))
        self.clock = clock
        self.loads: deque[tuple[float, float]] = deque()
        self.counts: deque[tuple[float, int]] = deque()
        self.since = clock()
        """When the current size was reached (or the autoscaler started)."""
        self.load: float | None = None
        """The windowed fleet load of the last look (None: no proxy answered yet)."""

    def step(self, cluster: fleet.Cluster, now: float) -> str | None:
        """One look (under the cluster's lock); "out" or "in" when it changed the fleet."""
        members = cluster.members or []
        answered = [load for load in map(self.load_of, members) if load is not None]
        if answered:
            self.loads.append((now, sum(answered) / len(answered)))
        while self.loads and self.loads[0][0] < now - WINDOW_S:
            self.loads.popleft()
        if not self.loads or now - self.since < WINDOW_S:
            return self.bound(cluster)  # too soon to judge this size (or nothing heard)
        self.load = sum(load for _, load in self.loads) / len(self.loads)
        count = wanted(len(members), self.load, self.scaling)
        self.counts.append((now, count))
        while self.counts[0][0] < now - self.scaling.scale_in_after_s:
            self.counts.popleft()
        if count > len(members):
            return self.grow(cluster, f"load {self.load:.2f} per worker asks for {count}")
        settled = now - self.since >= self.scaling.scale_in_after_s
        highest = max(asked for _, asked in self.counts)
        if settled and highest < len(members):
            why = f"load {self.load:.2f} per worker asked for {highest} or fewer"
            return self.shrink(cluster, f"{why} for {self.scaling.scale_in_after_s:.0f} s")
        return self.bound(cluster)

    def bound(self, cluster: fleet.Cluster) -> str | None:
        """Back within the bounds (they were changed, or an instance was lost)."""
        count = len(cluster.members or [])
        if count < self.scaling.min:
            return self.grow(cluster, f"below --min {self.scaling.min}")
        if count > self.scaling.max:
            return self.shrink(cluster, f"above --max {self.scaling.max}")
        return None

    def grow(self, cluster: fleet.Cluster, why: str) -> str:
        count = len(cluster.members)
        log.warning("scaling out, %d -> %d instances: %s", count, count + 1, why)
        try:
            fleet.add_member(cluster)
        finally:  # a failed start too: the next try waits for a new window
            self.changed()
        return "out"

    def shrink(self, cluster: fleet.Cluster, why: str) -> str:
        count = len(cluster.members)
        log.warning("scaling in, %d -> %d instances: %s", count, count - 1, why)
        try:
            fleet.retire_member(cluster, cluster.members[-1])
        finally:
            self.changed()
        return "in"

    def changed(self) -> None:
        self.since = self.clock()
        self.loads.clear()
        self.counts.clear()
