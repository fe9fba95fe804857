"""The local fleet's keeper: what a kubelet and a ReplicaSet do for pods, for `petseg cluster`.

`petseg cluster start` runs it in a process of its own (`petseg cluster keep`), and
`petseg cluster stop` stops it first. Once a second it looks at every instance:

- a web proxy that exited is started again on the same ports (a container restart: the
  balancer's list does not change);
- a proxy that has not answered its health check with 200 for ``UNHEALTHY_S`` is started again
  too if its TorchServe answers as ready (the proxy hung); otherwise (TorchServe hung or serving
  nothing), and when a TorchServe exited, the instance is replaced by a new one that applies the
  serving state before it joins the balancer (a pod replaced);
- a TorchServe worker that died is TorchServe's own to restart; the keeper counts it;
- the rollout's decider (`petseg rollout watch`, petseg.rollout.decider) runs as its child and is
  started again if it exits.

Each restart is logged and counted in ``petseg_cluster_restarts_total`` (its own /metrics on
127.0.0.1, the port in cluster.json). A place whose restarts keep failing, or whose new process
dies again within ``STABLE_S``, waits longer each time (10 s, doubling, at most 5 minutes: a
kubelet's crash-loop back-off) instead of spinning. nginx sends each upload that meets a dead or
hung instance to another one (deploy/nginx/nginx.conf), so none is lost meanwhile.

With bounds in the cluster's record (`petseg cluster start --min N --max M`) it also scales
the fleet on the proxies' load per worker (petseg.fleet.autoscale), as a HorizontalPodAutoscaler
does on the same metric; each change is logged and counted in ``petseg_cluster_scalings_total``.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from petseg.fleet import cluster as fleet
from petseg.fleet.autoscale import Autoscaler, Scaling
from petseg.serving.launcher import http_status
from torchserve_client import TorchServeError

log = logging.getLogger("petseg.fleet.keeper")
TICK_S = 1.0
UNHEALTHY_S = 8.0
"""How long a proxy may fail its health check before its instance is replaced (a kubelet's
liveness probe: 3 failures 10 s apart by default; shorter here, where the fleet is small)."""
HEALTH_TIMEOUT_S = 3.0
BACKOFF_FIRST_S = 10.0
BACKOFF_MAX_S = 300.0
STABLE_S = 60.0
"""A restarted process that lives this long resets its back-off."""


class Terminated(Exception):
    """SIGTERM: `petseg cluster stop` is stopping the keeper."""


@dataclass
class Watched:
    """What the keeper remembers of one instance between two looks."""

    unhealthy_since: float | None = None
    worker_pids: frozenset[int] = frozenset()


@dataclass
class Backoff:
    """The crash-loop back-off of one kind of restart in one place (a kubelet's, per
    container)."""

    crashes: int = 0
    """Restarts in a row that failed or did not live ``STABLE_S``."""
    not_before: float = 0.0
    last_restart: float = 0.0

    def restarted(self, now: float, ok: bool) -> float:
        """Record a restart; the delay before the next one may be tried."""
        if not ok or now - self.last_restart < STABLE_S:
            self.crashes += 1
        else:
            self.crashes = 0
        self.last_restart = now
        delay = 0.0 if self.crashes == 0 else backoff(self.crashes)
        self.not_before = now + delay
        return delay


def backoff(crashes: int) -> float:
    return min(BACKOFF_FIRST_S * 2 ** (crashes - 1), BACKOFF_MAX_S)


class KeeperMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.restarts = Counter(
            "petseg_cluster_restarts",
            "Processes of the local fleet restarted by the keeper (worker: by TorchServe, seen "
            "by the keeper), by kind and reason",
            ["kind", "reason"],
            registry=self.registry,
        )
        self.instances = Gauge(
            "petseg_cluster_instances", "Instances in the fleet", registry=self.registry
        )
        self.backing_off = Gauge(
            "petseg_cluster_backing_off",
            "Slots waiting out a crash-loop back-off before their next restart",
            registry=self.registry,
        )
        self.scalings = Counter(
            "petseg_cluster_scalings",
            "Instances the autoscaler added (out) or drained and stopped (in)",
            ["direction"],
            registry=self.registry,
        )
        self.load = Gauge(
            "petseg_cluster_load_per_worker",
            "The fleet's mean load per worker over the autoscaler's window, as it judged it",
            registry=self.registry,
        )
        for direction in ("out", "in"):
            self.scalings.labels(direction)


class Keeper:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.metrics = KeeperMetrics()
        self.watched: dict[str, Watched] = {}
        """By the member's folder: each start has its own, and a roll or a scaling moves members
        in the list (by position, a new instance would be compared with the one before it)."""
        self.backoffs: dict[tuple[int | None, str], Backoff] = {}
        """By position and kind of restart (None: the decider)."""
        self.decider: subprocess.Popen | None = None
        self.autoscaler: Autoscaler | None = None
        """Made from the record's bounds, again when they change."""

    # -- the loop --------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Until ``stop``, or until the cluster's record is gone (stopped by other means); a
        look that fails is logged and the next one tried: the keeper itself never gives up."""
        while not stop.is_set():
            try:
                self.tick()
            except FileNotFoundError as exc:
                log.error("%s: nothing left to keep", exc)
                return
            except (Terminated, KeyboardInterrupt):
                raise
            except Exception:
                log.exception("a look at the fleet failed; trying again")
            stop.wait(TICK_S)

    def tick(self) -> None:
        now = time.monotonic()
        with fleet.locked(self.root):
            cluster = fleet.Cluster.load(self.root)
            for gone in self.watched.keys() - {member.workdir for member in cluster.members}:
                del self.watched[gone]
            for index, member in enumerate(list(cluster.members)):
                self.keep(cluster, index, member, now)
            self.scale(cluster, now)
            self.metrics.instances.set(len(cluster.members))
        self.keep_decider(now)
        waiting = sum(backoff.not_before > now for backoff in self.backoffs.values())
        self.metrics.backing_off.set(waiting)

    def scale(self, cluster: fleet.Cluster, now: float) -> None:
        """The autoscaler's look, with the bounds the record holds now (None: a fixed size)."""
        bounds = Scaling(**cluster.scaling) if cluster.scaling else None
        if bounds is None:
            self.autoscaler = None
            return
        if self.autoscaler is None or self.autoscaler.scaling != bounds:
            self.autoscaler = Autoscaler(bounds)
        change = self.autoscaler.step(cluster, now)
        if change is not None:
            self.metrics.scalings.labels(change).inc()
        if self.autoscaler.load is not None:
            self.metrics.load.set(self.autoscaler.load)

    def keep(self, cluster: fleet.Cluster, index: int, member: fleet.Member, now: float) -> None:
        watched = self.watched.setdefault(member.workdir, Watched())
        problem = self.problem(member, watched, now)
        if problem is None:
            return
        kind, reason = problem
        backoff = self.backoffs.setdefault((index, kind), Backoff())
        if now < backoff.not_before:
            return  # backing off
        self.metrics.restarts.labels(kind, reason).inc()
        what = "its web proxy" if kind == "web" else "the instance"
        log.warning("instance %s: %s %s: restarting %s", member.workdir, kind, reason, what)
        try:
            if kind == "web":
                fleet.restart_proxy(cluster, member)
            else:
                fleet.replace_member(cluster, member)
        except (Terminated, KeyboardInterrupt):
            raise
        except Exception as exc:  # a failed start: back off, try again later
            delay = backoff.restarted(time.monotonic(), ok=False)
            log.error(
                "instance %s: restart failed (%s); next try in %.0f s", member.workdir, exc, delay
            )
            return
        self.watched.pop(member.workdir, None)  # a new proxy or a new instance: looked at afresh
        delay = backoff.restarted(time.monotonic(), ok=True)
        if delay:
            log.warning(
                "instance %s: %s restarted %d times in a row: next restart in %.0f s or later",
                member.workdir,
                kind,
                backoff.crashes,
                delay,
            )

    def problem(self, member: fleet.Member, watched: Watched, now: float) -> tuple[str, str] | None:
        """What is wrong with ``member`` now: (kind, reason), or None."""
        if not member.torchserve.alive():
            return "torchserve", "exited"
        if not member.web.alive():
            return "web", "exited"
        if http_status(f"{member.url}/api/health", HEALTH_TIMEOUT_S) == 200:
            watched.unhealthy_since = None
            self.count_worker_restarts(member, watched)
            return None
        if watched.unhealthy_since is None:
            watched.unhealthy_since = now
        if now - watched.unhealthy_since < UNHEALTHY_S:
            return None
        if member.instance.client(timeout=HEALTH_TIMEOUT_S).health().ready:
            return "web", "unhealthy"  # TorchServe is fine: the proxy hangs
        return "instance", "unhealthy"

    def count_worker_restarts(self, member: fleet.Member, watched: Watched) -> None:
        """Workers TorchServe started again since the last look: each pid that went while as
        many workers stand as before."""
        try:
            workers = member.instance.client(timeout=HEALTH_TIMEOUT_S).workers()
        except (TorchServeError, OSError):
            return
        pids = frozenset(w["pid"] for w in workers if w.get("pid"))
        gone = watched.worker_pids - pids
        if watched.worker_pids and gone and len(pids) >= len(watched.worker_pids):
            self.metrics.restarts.labels("worker", "exited").inc(len(gone))
            log.warning(
                "instance %s: %d worker(s) restarted by TorchServe", member.workdir, len(gone)
            )
        watched.worker_pids = pids

    # -- the decider -----------------------------------------------------------------------------
    def keep_decider(self, now: float) -> None:
        decider = self.decider
        backoff = self.backoffs.setdefault((None, "decider"), Backoff())
        if decider is not None and decider.poll() is None:
            return
        if decider is not None:
            self.metrics.restarts.labels("decider", "exited").inc()
            log.warning(
                "the rollout's decider exited (status %s): starting it again", decider.returncode
            )
            backoff.restarted(now, ok=True)
        if now < backoff.not_before:
            return
        self.decider = start_decider(self.root)

    def stop_decider(self) -> None:
        if self.decider is not None and self.decider.poll() is None:
            self.decider.terminate()
            try:
                self.decider.wait(30)
            except subprocess.TimeoutExpired:
                self.decider.kill()
                self.decider.wait()


def start_decider(root: Path) -> subprocess.Popen:
    """`petseg rollout watch --cluster ROOT`, its output in the keeper's log."""
    with (root / "decider.out").open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "petseg", "rollout", "watch", "--cluster", str(root)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def keep(root: Path) -> int:
    """`petseg cluster keep`: until SIGTERM. Records its pid and metrics port in cluster.json."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    keeper = Keeper(root)
    port = fleet.free_ports(1)[0]
    start_http_server(port, addr="127.0.0.1", registry=keeper.metrics.registry)
    with fleet.locked(root):
        cluster = fleet.Cluster.load(root)
        cluster.keeper_metrics_port = port
        cluster.save()
    log.info("keeping the fleet in %s; metrics on http://127.0.0.1:%d/metrics", root, port)

    def terminate(signum: int, frame: object) -> None:
        raise Terminated

    signal.signal(signal.SIGTERM, terminate)
    try:
        keeper.run(threading.Event())
    except (Terminated, KeyboardInterrupt):
        log.info("stopped")
    finally:
        keeper.stop_decider()
    return 0
