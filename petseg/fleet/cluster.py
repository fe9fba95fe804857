"""Several petseg instances behind nginx on one machine: what a cluster does, with real processes.

An instance is what a Kubernetes pod holds (docs/containers-and-kubernetes.md): a TorchServe
and the web proxy beside it, which reads that TorchServe's key file. nginx balances over the
proxies, drops an instance that fails (passive health checks) and sends a failed request to
another one.
Every instance applies the cluster's one serving state before it joins the balancer (a new
one, a replacement in a roll, one that replaces a dead instance), so none drifts from the rest.
`petseg cluster start|stop|roll|heal` (`make cluster N=2`, `make cluster-stop`) and the suite's
proofs (spread, failover, rolling replacement, convergence) use this module; the keeper
(petseg.fleet.keeper, started by `petseg cluster start`) uses it to heal the fleet by itself. Every
change of the cluster's record happens under its lock (:func:`locked`), so the keeper and an
operator's `roll` or `heal` take turns.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from frontend_server import DEFAULTS as WEB_DEFAULTS
from handler.protocol import Ports
from petseg.fleet import processes
from petseg.fleet.processes import Recorded
from petseg.fleet.proxy_gauges import gauge
from petseg.rollout.decider import Fleet
from petseg.serving import state
from petseg.serving.demo import external_command, web_environment
from petseg.serving.launcher import (
    ROOT,
    Instance,
    bring_up,
    fill,
    free_ports,
    start,
    stop,
    unused_ports,
    wait_answering,
)
from torchserve_client.report import write_atomically

NGINX_TEMPLATE = ROOT / "deploy" / "nginx" / "nginx.conf"
DEFAULT_ROOT = ROOT / "logs" / "cluster"
STATE_FILE = "cluster.json"
INSTANCES_FILE = "instances.txt"
"""One TorchServe folder a line: what `petseg --instances FILE models ...` acts on."""
FAIL_TIMEOUT_S = 10
DRAIN_TIMEOUT_S = WEB_DEFAULTS["TIMEOUT_S"]
"""The proxy's own timeout for one call to TorchServe: no upload outlives it."""


@dataclass
class Member:
    """One instance: a TorchServe (its folder names it) and its web proxy."""

    workdir: str
    ports: dict[str, int]
    torchserve: Recorded
    """Leader of TorchServe's process group: the launcher, Java and the workers."""
    web_port: int
    web: Recorded
    """The web proxy, leader of its own process group too."""
    operator_port: int = 0
    """The proxy's operators' listener (/metrics, /status.json): what the decider reads."""

    @classmethod
    def from_dict(cls, data: dict) -> Member:
        """A member as :meth:`Cluster.save` wrote it (its processes as nested records)."""
        processes_ = {name: Recorded(**data[name]) for name in ("torchserve", "web")}
        return cls(**{**data, **processes_})

    @property
    def instance(self) -> Instance:
        return Instance(Path(self.workdir), ports=Ports(**self.ports))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def operator_url(self) -> str:
        return f"http://127.0.0.1:{self.operator_port}"


@dataclass
class Cluster:
    """Instances and the balancer in front, as `cluster.json` in ``root`` records them."""

    root: str
    store: str
    state: str
    """The serving state file every instance applies."""
    port: int
    nginx: Recorded | None = None
    members: list[Member] | None = None
    started: int = 0
    """Instances started so far: each new one gets a folder of its own."""
    keeper: Recorded | None = None
    """The keeper (petseg.fleet.keeper) that heals the cluster; None: none."""
    keeper_metrics_port: int = 0
    scaling: dict[str, float] | None = None
    """The autoscaler's bounds and pace (petseg.fleet.autoscale.Scaling); None: a fixed size."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def save(self) -> None:
        """Replaced atomically: the keeper saves while operators and tests read it."""
        write_atomically(Path(self.root, STATE_FILE), json.dumps(asdict(self), indent=2) + "\n")
        folders = "".join(f"{member.workdir}\n" for member in self.members or [])
        write_atomically(Path(self.root, INSTANCES_FILE), folders)

    def fleet(self) -> Fleet:
        """What the rollout's decider looks at: every instance and its proxy's listener."""
        members = self.members or []
        return Fleet([m.instance for m in members], [m.operator_url for m in members])

    @classmethod
    def load(cls, root: Path = DEFAULT_ROOT) -> Cluster:
        path = Path(root) / STATE_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no cluster in {root}: start one with `petseg cluster start`")
        data = json.loads(path.read_text())
        for name in ("nginx", "keeper"):
            data[name] = data[name] and Recorded(**data[name])
        data["members"] = [Member.from_dict(member) for member in data["members"] or []]
        return cls(**data)


def start_member(cluster: Cluster) -> Member:
    """A TorchServe serving the cluster's state from its store, and its proxy; both ready,
    or both stopped again and the failure raised."""
    cluster.started += 1
    workdir = Path(cluster.root) / f"instance-{cluster.started}"
    instance = Instance(workdir, Path(cluster.store), unused_ports())
    server = start(instance)
    torchserve = processes.adopt(server)
    web = None
    try:
        # The proxy starts beside TorchServe (it answers 503 until the state is applied): a
        # replacement is back a few seconds sooner.
        web_port, operator_port = free_ports(2)
        proxy = start_proxy(instance, web_port, operator_port)
        web = processes.adopt(proxy)
        bring_up(instance, server, Path(cluster.state), timeout=300)
        member = Member(
            str(workdir), asdict(instance.ports), torchserve, web_port, web, operator_port
        )
        wait_answering(f"{member.url}/api/health", proxy, "the web proxy", timeout=60, status=200)
    except BaseException:
        if web is not None:
            web.signal(signal.SIGTERM)
            web.reap()
        stop(instance)
        torchserve.reap()
        raise
    return member


def add_member(cluster: Cluster) -> Member:
    """A new instance, ready (the state applied), then in the balancer: it takes no upload
    before it can answer it."""
    member = start_member(cluster)
    cluster.members.append(member)
    cluster.save()
    reload_nginx(cluster)
    return member


def retire_member(cluster: Cluster, member: Member, settle_s: float = 2.0) -> None:
    """``member`` out of the balancer first (marked down: no new uploads), stopped once it
    finished what it holds (:func:`drain`), then out of the record."""
    reload_nginx(cluster, drained={member.web_port})
    drain(member, settle_s)
    stop_member(member)
    cluster.members.remove(member)
    cluster.save()
    reload_nginx(cluster)


def drain(member: Member, settle_s: float, timeout: float = DRAIN_TIMEOUT_S) -> None:
    """Wait ``settle_s`` (nginx's old workers finish handing out what they hold), then until
    the proxy has no request under way, at most ``timeout``: a 12 MP upload under load
    takes seconds, and one cut off here would be lost. A proxy that does not answer holds
    nothing it could still finish."""
    time.sleep(settle_s)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not gauge(member.operator_url, "petseg_proxy_requests_in_flight"):
            return
        time.sleep(0.2)


def start_proxy(instance: Instance, port: int, operator_port: int) -> subprocess.Popen:
    """`petseg run --external` in front of ``instance``, as the pod's web container is, its
    operators' listener on ``operator_port``."""
    with (instance.workdir / "web.out").open("ab") as log:
        return subprocess.Popen(
            external_command(port),
            env=web_environment(instance, METRICS_ADDRESS=f"127.0.0.1:{operator_port}"),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_member(member: Member) -> None:
    """The proxy first (nginx sends what it had in flight elsewhere), then TorchServe."""
    member.web.signal(signal.SIGTERM)
    member.web.reap()
    stop(member.instance)
    member.torchserve.reap()


def alive(member: Member) -> bool:
    """Both process groups of the instance still have their leaders."""
    return member.web.alive() and member.torchserve.alive()


def kill_member(member: Member) -> None:
    """SIGKILL the whole instance, as when its machine dies: proxy, Java frontend, workers."""
    for leader in (member.web, member.torchserve):
        leader.signal_group(signal.SIGKILL)
        leader.reap()


# -- the balancer ------------------------------------------------------------------------------
def render_nginx(cluster: Cluster, drained: set[int] = frozenset()) -> Path:
    """nginx.conf for the cluster's instances; ``drained`` ones are marked down (no new
    requests) while they finish what they hold."""
    servers = "\n".join(
        f"        server 127.0.0.1:{m.web_port} max_fails=1 fail_timeout={FAIL_TIMEOUT_S}s"
        + (" down;" if m.web_port in drained else ";")
        for m in cluster.members
    )
    values = {
        "SERVERS": servers,
        "PORT": cluster.port,
        "TRIES": max(2, len(cluster.members)),
        "MAX_BODY_MB": math.ceil(WEB_DEFAULTS["MAX_UPLOAD_MB"]) + 1,
    }
    text = fill(NGINX_TEMPLATE, values)
    prefix = Path(cluster.root) / "nginx"
    (prefix / "body").mkdir(parents=True, exist_ok=True)
    (prefix / "nginx.conf").write_text(text)
    return prefix


def nginx_command() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if not found:
        raise RuntimeError("nginx is not installed: run `make balancer` (Debian's nginx-light)")
    return found


def start_nginx(cluster: Cluster) -> None:
    prefix = render_nginx(cluster)
    with (prefix / "nginx.out").open("ab") as log:
        command = [nginx_command(), "-p", str(prefix), "-c", "nginx.conf", "-e", "stderr"]
        process = subprocess.Popen(
            [*command, "-g", "daemon off;"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    cluster.nginx = processes.adopt(process)
    wait_answering(f"{cluster.url}/api/health", process, "nginx", timeout=60, status=200)


def reload_nginx(cluster: Cluster, drained: set[int] = frozenset()) -> None:
    """New configuration, no dropped request: the old workers finish what they hold."""
    prefix = render_nginx(cluster, drained)
    subprocess.run(
        [nginx_command(), "-p", str(prefix), "-c", "nginx.conf", "-e", "stderr", "-t"],
        check=True,
        capture_output=True,
    )
    cluster.nginx.signal(signal.SIGHUP)
    time.sleep(0.5)  # the master starts new workers and tells the old ones to finish


# -- the cluster's life --------------------------------------------------------------------------
def start_cluster(
    count: int,
    store: Path,
    state_file: Path,
    root: Path = DEFAULT_ROOT,
    port: int = 8000,
    scaling: dict[str, float] | None = None,
) -> Cluster:
    """``count`` instances and nginx; ``scaling``: the bounds the keeper's autoscaler keeps
    (petseg.fleet.autoscale.Scaling.as_dict())."""
    root.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(
        str(root),
        str(Path(store).resolve()),
        str(Path(state_file).resolve()),
        port,
        members=[],
        scaling=scaling,
    )
    try:
        for _ in range(count):
            cluster.members.append(start_member(cluster))
            cluster.save()
        start_nginx(cluster)
        cluster.save()
    except BaseException:
        stop_cluster(cluster)
        raise
    return cluster


def start_keeper(cluster: Cluster) -> int:
    """`petseg cluster keep` for ``cluster``, in a session of its own (it outlives the command
    that started it, as the fleet does); its pid, recorded."""
    root = Path(cluster.root)
    with (root / "keeper.out").open("ab") as out:
        keeper = subprocess.Popen(
            [sys.executable, "-m", "petseg", "cluster", "keep", "--root", str(root)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    with locked(root):
        running = Cluster.load(root)
        running.keeper = cluster.keeper = processes.adopt(keeper)
        running.save()
    return keeper.pid


def roll(cluster: Cluster, settle_s: float = 2.0) -> None:
    """Replace every instance, one at a time, by a new one that applies the serving state as it
    is now (a surge of one, none unavailable, as the Deployment's rolling update after its
    ConfigMap changed): the successor starts and joins the balancer, the old instance is drained
    (no new requests), finishes what it holds, and stops. A successor that fails to start
    leaves the old instance serving."""
    for old in list(cluster.members):
        add_member(cluster)
        retire_member(cluster, old, settle_s)


def heal(cluster: Cluster) -> list[Member]:
    """Replace each instance whose TorchServe or proxy died by a new one (it applies the
    state before it joins the balancer), as a Deployment replaces a lost pod; the new ones."""
    return [replace_member(cluster, dead) for dead in cluster.members if not alive(dead)]


def replace_member(cluster: Cluster, old: Member) -> Member:
    """``old`` (dead, hung or half gone) killed and replaced in its place by a new instance
    that applied the state, the balancer told; the new one."""
    kill_member(old)  # what is left of it
    successor = start_member(cluster)
    cluster.members[cluster.members.index(old)] = successor
    cluster.save()
    reload_nginx(cluster)
    return successor


def restart_proxy(cluster: Cluster, member: Member) -> Member:
    """A new web proxy for ``member``'s TorchServe on the same ports (the balancer's list is
    unchanged), as a kubelet restarts one container of a pod; the member as it is now."""
    member.web.signal_group(signal.SIGKILL)
    member.web.reap()
    proxy = start_proxy(member.instance, member.web_port, member.operator_port)
    restarted = dataclasses.replace(member, web=processes.adopt(proxy))
    cluster.members[cluster.members.index(member)] = restarted
    cluster.save()
    wait_answering(f"{restarted.url}/api/health", proxy, "the web proxy", timeout=60, status=200)
    return restarted


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    """The cluster's lock: one change of its record at a time (keeper, roll, heal, stop)."""
    with state.locked(Path(root) / STATE_FILE):
        yield


def stop_cluster(cluster: Cluster) -> None:
    """The keeper first (it would heal what is being stopped), then nginx and every instance
    as the keeper left them."""
    if cluster.keeper:
        cluster.keeper.signal(signal.SIGTERM)
        cluster.keeper.reap(timeout=60)
        with contextlib.suppress(FileNotFoundError):
            cluster = Cluster.load(Path(cluster.root))
    if cluster.nginx:
        cluster.nginx.signal(signal.SIGQUIT)
    for member in cluster.members or []:
        stop_member(member)
    if cluster.nginx:
        cluster.nginx.reap()
    Path(cluster.root, STATE_FILE).unlink(missing_ok=True)
