"""How many threads a CPU worker gives torch: the cores it may really use, shared with the other
workers under load, all of them for a request that is alone.

``os.cpu_count()`` is the machine's count; in a container the CPU quota (cgroup ``cpu.max``) and
the affinity mask are what the worker gets, and more threads than that only queue. Under load
every worker is busy and batches fill, so each takes its share of the cores. A batch of one
request while no other worker is busy (TorchServe waited ``maxBatchDelay`` and nothing else
came) gets every core: the single-user latency of the page. "Busy" is seen through advisory
locks, one file per worker in a folder of /dev/shm (per machine; per pod in Kubernetes): giving
two lone batches every core at once oversubscribed the cores and, with OpenMP's spinning
threads, made p95 at 2 to 4 clients 10x worse (0.8-1.0 s against 60-110 ms).
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
    shared: int
    """Threads for a batch of several requests: this worker's share of the cores."""
    lone: int
    """Threads for a batch of one request."""

    @classmethod
    def for_worker(cls, configured: int, workers: int, lone_every_core: bool = True) -> ThreadPlan:
        """``configured`` threads always (model-config.yaml ``threads``), or 0: the plan above
        (a lone request keeps the worker's share too when ``lone_every_core`` is off)."""
        if configured:
            return cls(configured, configured)
        cores = usable_cores()
        shared = max(1, cores // max(1, workers))
        return cls(shared, cores if lone_every_core else shared)

    def threads(self, requests: int, others_busy: int) -> int:
        """For a batch of ``requests`` while ``others_busy`` other workers are working."""
        if requests > 1:
            return self.shared
        return max(self.shared, self.lone // (1 + others_busy))


def _default_folder() -> Path:
    """/dev/shm (memory, one per machine or pod) where it is writable, else the temp folder."""
    shared = Path("/dev/shm")
    base = shared if os.access(shared, os.W_OK) else Path(tempfile.gettempdir())
    return base / f"petseg-workers-{os.getuid()}"


class BusyWorkers:
    """Workers on this machine mark themselves busy (an exclusive lock on their own file) and
    count the others that are."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder or _default_folder()
        self.folder.mkdir(mode=0o700, exist_ok=True)
        # a descriptor held for the worker's life: its lock says "busy"
        self._own = os.open(self.folder / str(os.getpid()), os.O_WRONLY | os.O_CREAT, 0o600)

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

    def others_busy(self) -> int:
        """Other workers holding their lock now; files of workers that died are removed."""
        busy = 0
        for entry in os.scandir(self.folder):
            if entry.name == str(os.getpid()):
                continue
            try:
                descriptor = os.open(entry.path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                busy += 1
            else:
                fcntl.flock(descriptor, fcntl.LOCK_UN)
                _remove_if_dead(entry)
            finally:
                os.close(descriptor)
        return busy


def _remove_if_dead(entry: os.DirEntry) -> None:
    """A worker's file outlives a killed worker; its pid no longer running is the sign."""
    if not entry.name.isdigit():
        return
    try:
        os.kill(int(entry.name), 0)
    except ProcessLookupError:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(entry.path)
    except PermissionError:
        pass  # another user's process: alive
