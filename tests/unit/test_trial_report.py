"""The proxy's view of the serving report: uploads do not read it (one stat() each), a change
reaches the very next upload, and a malformed rollout means no trial (the default serves)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from prometheus_client import CollectorRegistry

from frontend_server.rollout import Trial
from torchserve_client import ServingReport, TorchServe
from torchserve_client import report as served_report
from torchserve_client.rollout import Decision, Rollout

TRIAL = Rollout("2.0", "canary", 100, started_at=1_700_000_000.0)


def trial_in(folder: Path) -> Trial:
    client = TorchServe("http://127.0.0.1:9", "http://127.0.0.1:9", folder / "key_file.json")
    return Trial(folder, client, CollectorRegistry())


def report(folder: Path, rollout: dict | None) -> None:
    ServingReport("serving.json", True, rollout=rollout).write(folder)


def test_uploads_read_the_report_only_when_it_changed(tmp_path, monkeypatch):
    report(tmp_path, TRIAL.as_dict())
    trial = trial_in(tmp_path)
    reads = []
    real_read = served_report.ServingReport.read
    monkeypatch.setattr(
        served_report.ServingReport,
        "read",
        staticmethod(lambda folder: reads.append(1) or real_read(folder)),
    )
    assert all(trial.current() == TRIAL for _ in range(500))
    assert len(reads) == 1, "an upload read the report file"
    report(tmp_path, TRIAL.as_dict())  # written again, the same trial: read again, once
    assert all(trial.current() == TRIAL for _ in range(500))
    assert len(reads) == 2


def test_a_decision_reaches_the_next_upload(tmp_path):
    report(tmp_path, TRIAL.as_dict())
    trial = trial_in(tmp_path)
    assert trial.current() == TRIAL
    decided = replace(TRIAL, decision=Decision("aborted", "the decider", "masks disagree", {}))
    report(tmp_path, decided.as_dict())
    assert trial.current() is None
    assert trial.figures()["decision"]["reason"] == "masks disagree"


def test_a_malformed_rollout_or_no_report_means_the_default_serves(tmp_path):
    report(tmp_path, {"version": "2.0", "mode": "canary", "percent": "all of them"})
    trial = trial_in(tmp_path)
    assert trial.current() is None
    (tmp_path / "serving-report.json").unlink()
    assert trial.current() is None and trial.figures() is None
