"""A worker's threads: the cores it may use, shared under load, all for a lone request, never
two lone requests on all cores at once."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from handler import threads
from handler.threads import BusyWorkers, ThreadPlan


def test_the_plan_shares_the_cores_under_load_and_gives_all_to_a_lone_request():
    plan = ThreadPlan(cores=8)
    assert (plan.shared(workers=2), plan.shared(workers=3), plan.shared(workers=16)) == (4, 2, 1)
    assert plan.threads(requests=8, workers=2, others_busy=0) == 4
    assert plan.threads(requests=1, workers=2, others_busy=0) == 8
    assert plan.threads(requests=1, workers=2, others_busy=1) == 4  # the other has its share
    assert plan.threads(requests=1, workers=6, others_busy=5) == 1  # never below the share
    assert plan.threads(requests=1, workers=1, others_busy=0) == 8
    assert not plan.lone_may_gain(workers=1)  # alone, the share is every core already
    fixed = ThreadPlan(cores=8, configured=3)
    assert fixed.threads(1, 2, 0) == fixed.threads(8, 1, 1) == 3
    assert not fixed.lone_may_gain(workers=4)
    keeps_its_share = ThreadPlan(cores=8, lone_every_core=False)
    assert keeps_its_share.threads(requests=1, workers=2, others_busy=0) == 4


@pytest.mark.parametrize(
    ("cpu_max", "expected"), [("150000 100000\n", 1.5), ("max 100000\n", None), ("", None)]
)
def test_a_container_quota_bounds_the_cores(monkeypatch, tmp_path, cpu_max, expected):
    quota = tmp_path / "cpu.max"
    quota.write_text(cpu_max)
    monkeypatch.setattr(threads, "CGROUP_V2_QUOTA", quota)
    monkeypatch.setattr(threads, "CGROUP_V1_QUOTA", tmp_path / "missing")
    assert threads.cpu_quota() == expected
    cores = threads.usable_cores()
    assert cores == (1 if expected else len(threads.os.sched_getaffinity(0)))


HOLD = """
import sys, time
from pathlib import Path
from handler.threads import BusyWorkers
workers = BusyWorkers(Path(sys.argv[1]))
with workers.busy():
    print("busy", flush=True)
    sys.stdin.readline()
print("idle", flush=True)
time.sleep(60)
"""


def test_workers_see_each_other_alive_and_busy_through_locks_and_forget_dead_ones(tmp_path):
    folder = tmp_path / "workers"
    own = BusyWorkers(folder)
    assert own.alive() == 1 and own.others_busy() == 0
    with subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as other:
        try:
            assert other.stdout.readline().strip() == "busy"
            assert own.alive() == 2 and own.others_busy() == 1
            with own.busy():  # our own lock is never counted
                assert own.others_busy() == 1
            other.stdin.write("\n")
            other.stdin.flush()
            assert other.stdout.readline().strip() == "idle"
            assert own.alive() == 2 and own.others_busy() == 0  # idle but alive: counted
        finally:
            other.kill()
            other.wait()
    # SIGKILL: the kernel dropped its locks, so it counts as dead whoever has its pid now
    assert own.alive() == 1 and own.others_busy() == 0
    assert sorted(path.name for path in folder.iterdir()) == sorted(
        [str(os.getpid()), f"{os.getpid()}{threads.ALIVE}"]
    ), "the dead worker's files were kept"


def test_idle_stand_ins_count_as_alive_and_never_busy_while_held(tmp_path):
    folder = tmp_path / "workers"
    own = BusyWorkers(folder)
    with threads.idle_workers(3, folder):
        assert own.alive() == 4 and own.others_busy() == 0
    assert own.alive() == 1


def test_a_closed_worker_holds_no_lock_and_is_counted_as_gone(tmp_path):
    """The bench's in-process handlers, once measured: no longer workers of the machine."""
    folder = tmp_path / "workers"
    worker = BusyWorkers(folder)
    marker = folder / f"{os.getpid()}{threads.ALIVE}"
    assert threads._held(marker)
    worker.close()
    assert not threads._held(marker)
