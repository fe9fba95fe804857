"""The local fleet's autoscaler decides as a HorizontalPodAutoscaler does: out at once on a
window's load, in only after every count asked for over the scale-in delay was lower, nothing
on a look where no proxy answers, and back within the bounds. The fleet's own changes
(add_member, retire_member) are counted here; tests/system/test_autoscale.py runs them."""

from __future__ import annotations

import contextlib
import itertools

import pytest

from petseg.fleet import autoscale
from petseg.fleet import cluster as fleet
from petseg.fleet.autoscale import WINDOW_S, Autoscaler, Scaling, wanted
from petseg.fleet.processes import Recorded

SCALING = Scaling(1, 3, target=3.0, scale_in_after_s=30.0)


@pytest.mark.parametrize(
    ("instances", "load", "expected"),
    [
        (1, 9.0, 3),  # ceil(1 x 9 / 3)
        (2, 3.2, 2),  # within the 10 % tolerance
        (2, 3.4, 3),
        (1, 30.0, 3),  # at most max
        (3, 0.0, 1),  # at least min
        (3, 1.5, 2),
    ],
)
def test_the_count_is_the_hpas(instances, load, expected):
    assert wanted(instances, load, SCALING) == expected


@pytest.mark.parametrize("bounds", [(0, 2), (3, 2), (1, 2, 0.0), (1, 2, 3.0, -1.0)], ids=str)
def test_bounds_that_make_no_sense_are_refused(bounds):
    with pytest.raises(ValueError):
        Scaling(*bounds)


class Fleet:
    """A cluster record whose changes are counted, not made."""

    def __init__(self, count: int, monkeypatch) -> None:
        self.cluster = fleet.Cluster("root", "store", "state", 8000, members=[])
        self.changes: list[str] = []
        for _ in range(count):
            self.add()
        monkeypatch.setattr(fleet, "add_member", lambda cluster: self.add() or self.log("out"))
        monkeypatch.setattr(fleet, "retire_member", lambda cluster, member: self.retire(member))

    def add(self) -> None:
        n = len(self.cluster.members)
        nobody = Recorded(0, 0.0)
        self.cluster.members.append(fleet.Member(f"i{n}", {}, nobody, 9000 + n, nobody, 0))

    def retire(self, member: fleet.Member) -> None:
        assert member is self.cluster.members[-1], "the newest goes first"
        self.cluster.members.remove(member)
        self.log("in")

    def log(self, change: str) -> None:
        self.changes.append(change)


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def run(scaler: Autoscaler, clock: Clock, fleet_: Fleet, load: float | None, seconds: float):
    scaler.load_of = lambda member: load
    for _ in range(int(seconds)):
        clock.now += 1
        scaler.step(fleet_.cluster, clock.now)


def test_load_scales_out_one_at_a_time_and_each_size_is_judged_on_its_own(monkeypatch):
    clock, cluster = Clock(), Fleet(1, monkeypatch)
    scaler = Autoscaler(SCALING, clock=clock)
    run(scaler, clock, cluster, 9.0, WINDOW_S - 1)
    assert cluster.changes == [], "judged before a window of figures"
    run(scaler, clock, cluster, 9.0, 1)
    assert cluster.changes == ["out"] and len(cluster.cluster.members) == 2
    run(scaler, clock, cluster, 9.0, WINDOW_S - 1)
    assert cluster.changes == ["out"], "the new size judged on the old size's figures"
    run(scaler, clock, cluster, 9.0, 3 * WINDOW_S)
    assert cluster.changes == ["out", "out"] and len(cluster.cluster.members) == 3  # max


def test_quiet_scales_in_only_after_the_delay_and_a_burst_within_it_keeps_the_size(monkeypatch):
    clock, cluster = Clock(), Fleet(3, monkeypatch)
    scaler = Autoscaler(SCALING, clock=clock)
    run(scaler, clock, cluster, 0.5, 25)
    run(scaler, clock, cluster, 12.0, 5)  # a burst: its window asks for all 3
    run(scaler, clock, cluster, 0.5, 30)
    assert cluster.changes == [], "scaled in while a count of 3 was asked within the delay"
    run(scaler, clock, cluster, 0.5, 50)
    assert cluster.changes == ["in", "in"] and len(cluster.cluster.members) == 1  # min
    run(scaler, clock, cluster, 0.0, 120)
    assert cluster.changes == ["in", "in"], "below --min"


def test_a_spike_that_asks_for_more_within_the_delay_blocks_the_scale_in(monkeypatch):
    clock, cluster = Clock(), Fleet(2, monkeypatch)
    scaler = Autoscaler(Scaling(1, 2, target=3.0, scale_in_after_s=30.0), clock=clock)
    run(scaler, clock, cluster, 3.0, 15)  # asks for 2
    run(scaler, clock, cluster, 0.0, 14)  # asks for 1, but 2 was asked within 30 s
    assert cluster.changes == []
    run(scaler, clock, cluster, 0.0, 30)
    assert cluster.changes == ["in"]


def test_no_answer_from_any_proxy_changes_nothing(monkeypatch):
    clock, cluster = Clock(), Fleet(2, monkeypatch)
    scaler = Autoscaler(SCALING, clock=clock)
    run(scaler, clock, cluster, None, 120)
    assert cluster.changes == [] and scaler.load is None


def test_a_fleet_below_its_minimum_grows_back(monkeypatch):
    clock, cluster = Clock(), Fleet(1, monkeypatch)
    scaler = Autoscaler(Scaling(2, 3), clock=clock)
    run(scaler, clock, cluster, None, 1)
    assert cluster.changes == ["out"]


def test_a_failed_start_waits_for_a_new_window_before_the_next_try(monkeypatch):
    clock, cluster = Clock(), Fleet(1, monkeypatch)
    tries = []

    def failing(cluster_):
        tries.append(clock.now)
        raise RuntimeError("TorchServe did not start")

    monkeypatch.setattr(fleet, "add_member", failing)
    scaler = Autoscaler(SCALING, load_of=lambda member: 9.0, clock=clock)
    for _ in range(40):
        clock.now += 1
        with contextlib.suppress(RuntimeError):
            scaler.step(cluster.cluster, clock.now)
    assert len(tries) == 4 and all(b - a >= WINDOW_S for a, b in itertools.pairwise(tries))
    assert SCALING.target == autoscale.TARGET_LOAD
