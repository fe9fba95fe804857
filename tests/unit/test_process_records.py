"""The cluster's record names each process by pid and start time: a record whose pid went to
another process (pids wrap) must neither signal that process nor count as alive; a record's own
process group is still reached after its leader is gone."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from petseg.fleet import cluster as fleet
from petseg.fleet import processes
from petseg.fleet.processes import Recorded

SLEEP = [sys.executable, "-c", "import time; time.sleep(120)"]


@contextlib.contextmanager
def session_leader(command: list[str]) -> Iterator[subprocess.Popen]:
    """``command`` in a session (and process group) of its own, killed after."""
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.PIPE)
    try:
        yield process
    finally:
        process.kill()
        process.wait()
        process.stdout.close()


def gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(psutil.NoSuchProcess):
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                time.sleep(0.05)
                continue
        return True
    return False


def test_a_record_whose_pid_runs_another_process_now_leaves_it_alone() -> None:
    with session_leader(SLEEP) as other:
        stale = Recorded(other.pid, psutil.Process(other.pid).create_time() - 5)
        assert not stale.alive()
        stale.signal(signal.SIGKILL)
        stale.signal_group(signal.SIGKILL)
        stale.reap(timeout=1)
        time.sleep(0.2)
        assert other.poll() is None, "a stale record's signal reached the process holding its pid"


def test_a_record_reaches_its_own_process_and_reads_dead_once_it_is_reaped() -> None:
    with session_leader(SLEEP) as process:
        recorded = processes.adopt(process)
        assert recorded.alive()
        recorded.signal(signal.SIGKILL)
        recorded.reap(timeout=10)
        assert process.returncode == -signal.SIGKILL
        assert not recorded.alive()


def test_the_group_of_a_leader_that_is_gone_is_still_signalled() -> None:
    """TorchServe's launcher may die while its Java and workers go on in its group."""
    spawn = "import subprocess, sys; print(subprocess.Popen(sys.argv[1:]).pid, flush=True)"
    with session_leader([sys.executable, "-c", spawn, *SLEEP]) as leader:
        recorded = processes.adopt(leader)
        left = int(leader.stdout.readline())
        leader.wait()
        assert not recorded.alive() and psutil.pid_exists(left)
        recorded.signal_group(signal.SIGKILL)
        assert gone(left), "the rest of the group outlived the signal"


def test_the_record_on_disk_names_the_same_processes(tmp_path: Path) -> None:
    """The keeper reads what `petseg cluster start` saved: the same pid and start time."""
    with session_leader(SLEEP) as process:
        recorded = processes.adopt(process)
        member = fleet.Member("instance-1", {}, recorded, 9001, recorded, 9002)
        saved = fleet.Cluster(str(tmp_path), "store", "state", 8000, recorded, [member], 1, None)
        saved.save()
        loaded = fleet.Cluster.load(tmp_path)
        assert loaded == saved and loaded.members[0].torchserve.alive()
        process.kill()
        recorded.reap()
        assert not fleet.Cluster.load(tmp_path).members[0].web.alive()
