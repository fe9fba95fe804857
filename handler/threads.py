"""How many threads a CPU worker gives torch: the cores it may really use, shared with the other
workers under load, all of them for a request that is alone.

``os.cpu_count()`` is the machine's count; in a container the CPU quota (cgroup ``cpu.max``) and
the affinity mask are what the worker gets, and more threads than that only queue. Under load
every worker is busy and batches fill, so each takes its share of the cores: the cores over the
workers alive on the machine now, counted at every batch, so the share follows `models scale`,
a second version, a second instance, and workers that died. A batch of one request while no
other worker is busy (TorchServe waited ``maxBatchDelay`` and nothing else came) gets every
core: the single-user latency of the page.

Workers see each other through advisory locks on files in a folder of /dev/shm (per machine;
per pod in Kubernetes): each holds one lock for its life (the kernel drops it when the process
dies, whatever killed it) and another while it works on a batch. Giving two lone batches every
core at once oversubscribed the cores and, with OpenMP's spinning threads, made p95 at 2 to 4
clients 10x worse (0.8-1.0 s against 60-110 ms).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CGROUP_V2_QUOTA = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
CGROUP_V1_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")


def cpu_quota() -> float | None:
    """CPUs the container may use per period (cgroup v2, else v1); None when unlimited."""
    try:
        quota, period = CGROUP_V2_QUOTA.read_text().split()[:2]
    except (OSError, ValueError):
        try:
            quota, period = CGROUP_V1_QUOTA.read_text(), CGROUP_V1_PERIOD.read_text()
        except OSError:
            return None
    if quota.strip() in ("max", "-1"):
        return None
    return int(quota) / int(period)


def usable_cores() -> int:
    """The cores this process may run on, bounded by the container's CPU quota."""
    cores = len(os.sched_getaffinity(0))
    quota = cpu_quota()
    return max(1, min(cores, int(quota))) if quota else cores


@dataclass(frozen=True)
class ThreadPlan:
    cores: int
    """The cores this worker may use (``usable_cores``)."""
    configured: int = 0
    """model-config.yaml ``threads``: that many always; 0 for the plan."""
    lone_every_core: bool = True
    """A lone request takes every idle core (off: it keeps the worker's share)."""

    @classmethod
    def for_worker(cls, configured: int, lone_every_core: bool = True) -> ThreadPlan:
        return cls(usable_cores(), configured, lone_every_core)

    def shared(self, workers: int) -> int:
        """Threads for a batch of several requests while ``workers`` (this one included) are
        alive on the machine: this worker's share of the cores."""
        return self.configured or max(1, self.cores // max(1, workers))

    def lone_may_gain(self, workers: int) -> bool:
        """Whether a lone request may get more than the share: only then do the other workers'
        busy locks matter."""
        return not self.configured and self.lone_every_core and self.cores > self.shared(workers)

    def threads(self, requests: int, workers: int, others_busy: int) -> int:
        """For a batch of ``requests`` while ``workers`` are alive and ``others_busy`` of the
        others are working."""
        shared = self.shared(workers)
        if requests > 1 or not self.lone_may_gain(workers):
            return shared
        return max(shared, self.cores // (1 + others_busy))


def _default_folder() -> Path:
    """/dev/shm (memory, one per machine or pod) where it is writable, else the temp folder."""
    shared = Path("/dev/shm")
    base = shared if os.access(shared, os.W_OK) else Path(tempfile.gettempdir())
    return base / f"petseg-workers-{os.getuid()}"


ALIVE = ".alive"
"""The suffix of the file a worker holds locked for its whole life."""


class BusyWorkers:
    """Workers on this machine say they are alive (a lock held for life on ``PID.alive``) and
    busy (a lock on ``PID`` while they work), and count the others."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder or _default_folder()
        self.folder.mkdir(mode=0o700, exist_ok=True)
        pid = os.getpid()
        # descriptors held for the worker's life: the first's lock says "alive", the second's
        # "busy" (two files: converting one lock between kinds is not atomic)
        self._alive = _locked_file(self.folder / f"{pid}{ALIVE}")
        self._own = os.open(self.folder / str(pid), os.O_WRONLY | os.O_CREAT, 0o600)

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        fcntl.flock(self._own, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._own, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def alone(self) -> Iterator[None]:
        """The machine's workers one at a time (a start-up measurement that needs every core)."""
        descriptor = os.open(self.folder / ".measuring", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            with self.busy():
                yield
        finally:
            os.close(descriptor)  # closing releases the lock

    def close(self) -> None:
        """Stop counting as a worker (its locks go; the next count removes its files): for an
        in-process handler the bench is done with, as a worker ends only with its process."""
        os.close(self._alive)
        os.close(self._own)

    def alive(self) -> int:
        """Workers alive on the machine, this one included; the files of dead ones are removed."""
        alive = 1
        own = f"{os.getpid()}{ALIVE}"
        for entry in os.scandir(self.folder):
            if not entry.name.endswith(ALIVE) or entry.name == own:
                continue
            if _held(Path(entry.path)):
                alive += 1
            else:  # nobody holds it: its worker died
                for path in (entry.path, entry.path.removesuffix(ALIVE)):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
        return alive

    def others_busy(self) -> int:
        """Other workers holding their busy lock now."""
        own = str(os.getpid())
        return sum(
            _held(Path(entry.path))
            for entry in os.scandir(self.folder)
            if entry.name.isdigit() and entry.name != own
        )


@contextlib.contextmanager
def idle_workers(count: int, folder: Path | None = None) -> Iterator[None]:
    """``count`` workers alive and never busy, as the others count them: the served
    configuration's other workers, for a measurement run in one process (bench/ablation.py)."""
    folder = folder or _default_folder()
    folder.mkdir(mode=0o700, exist_ok=True)
    paths = [folder / f"idle-{os.getpid()}-{n}{ALIVE}" for n in range(count)]
    descriptors = [_locked_file(path) for path in paths]
    try:
        yield
    finally:
        for descriptor, path in zip(descriptors, paths, strict=True):
            os.close(descriptor)
            path.unlink(missing_ok=True)


def _locked_file(path: Path) -> int:
    """``path`` created already locked: locked under another name, then renamed, so that no
    other worker ever sees it unlocked and takes it for a dead one's."""
    hidden = path.with_name(f"{path.name}.new")
    descriptor = os.open(hidden, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    os.rename(hidden, path)
    return descriptor


def _held(path: Path) -> bool:
    """Whether a process holds an exclusive lock on ``path`` now (False when it is gone)."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        return False
    finally:
        os.close(descriptor)
