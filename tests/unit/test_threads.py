"""A worker's threads: the cores it may use, shared under load, all for a lone request, never
two lone requests on all cores at once."""

from __future__ import annotations

import subprocess
import sys

import pytest

from handler import threads
from handler.threads import BusyWorkers, ThreadPlan


def test_the_plan_shares_the_cores_under_load_and_gives_all_to_a_lone_request(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 8)
    plan = ThreadPlan.for_worker(configured=0, workers=2)
    assert (plan.shared, plan.lone) == (4, 8)
    assert plan.threads(requests=8, others_busy=0) == 4
    assert plan.threads(requests=1, others_busy=0) == 8
    assert plan.threads(requests=1, others_busy=1) == 4  # the other worker has its share
    assert plan.threads(requests=1, others_busy=5) == 4  # never below the share
    fixed = ThreadPlan.for_worker(configured=3, workers=2)
    assert fixed.threads(1, 0) == fixed.threads(8, 1) == 3


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


def test_workers_see_each_other_busy_through_locks_and_forget_dead_ones(tmp_path):
    folder = tmp_path / "workers"
    own = BusyWorkers(folder)
    with subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as other:
        try:
            assert other.stdout.readline().strip() == "busy"
            assert own.others_busy() == 1
            with own.busy():  # our own lock is never counted
                assert own.others_busy() == 1
            other.stdin.write("\n")
            other.stdin.flush()
            assert other.stdout.readline().strip() == "idle"
            assert own.others_busy() == 0
            assert (folder / str(other.pid)).exists()  # idle but alive: kept
        finally:
            other.kill()
    assert own.others_busy() == 0
    assert not (folder / str(other.pid)).exists()  # dead: removed
