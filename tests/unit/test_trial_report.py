"""The proxy's view of the serving report: uploads do not read it, a change reaches the proxy
within REPORT_STALENESS_S, and a malformed rollout means no trial (the default serves)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from prometheus_client import CollectorRegistry

from frontend_server import rollout as proxy_rollout
from frontend_server.rollout import REPORT_STALENESS_S, Trial
from torchserve_client import ServingReport, TorchServe
from torchserve_client.rollout import Decision, Rollout

TRIAL = Rollout("2.0", "canary", 100, started_at=1_700_000_000.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def trial_in(folder: Path, clock: Clock) -> Trial:
    client = TorchServe("http://127.0.0.1:9", "http://127.0.0.1:9", folder / "key_file.json")
    return Trial(folder, client, CollectorRegistry(), clock=clock)


def report(folder: Path, rollout: dict | None) -> None:
    ServingReport("serving.json", True, rollout=rollout).write(folder)


def test_the_report_is_looked_at_once_per_staleness_bound_not_per_upload(tmp_path, monkeypatch):
    clock = Clock()
    report(tmp_path, TRIAL.as_dict())
    trial = trial_in(tmp_path, clock)
    looks = []
    real_stamp = proxy_rollout.report_stamp
    monkeypatch.setattr(
        proxy_rollout, "report_stamp", lambda path: looks.append(1) or real_stamp(path)
    )
    assert all(trial.current() == TRIAL for _ in range(500))
    assert len(looks) == 1, "an upload looked at the report file"


def test_a_decision_reaches_the_proxy_within_the_bound_and_not_before_it_is_due(tmp_path):
    clock = Clock()
    report(tmp_path, TRIAL.as_dict())
    trial = trial_in(tmp_path, clock)
    assert trial.current() == TRIAL
    decided = replace(TRIAL, decision=Decision("aborted", "the decider", "masks disagree", {}))
    report(tmp_path, decided.as_dict())
    clock.now += REPORT_STALENESS_S / 2
    assert trial.current() == TRIAL, "read before its bound: every upload would pay for it"
    clock.now += REPORT_STALENESS_S / 2
    assert trial.current() is None
    assert trial.figures()["decision"]["reason"] == "masks disagree"


def test_a_malformed_rollout_or_no_report_means_the_default_serves(tmp_path):
    clock = Clock()
    report(tmp_path, {"version": "2.0", "mode": "canary", "percent": "all of them"})
    trial = trial_in(tmp_path, clock)
    assert trial.current() is None
    (tmp_path / "serving-report.json").unlink()
    clock.now += REPORT_STALENESS_S
    assert trial.current() is None and trial.figures() is None
