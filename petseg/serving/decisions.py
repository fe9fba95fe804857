"""A fleet's decision kept apart from the declared state, and merged into it where it is read.

On Kubernetes the declared state (config/serving.json) reaches the pods in a ConfigMap that
`kubectl apply` owns and whose hashed name rolls the pods when it changes, so the fleet's decider
cannot write there. It writes the decided rollout instead into a second ConfigMap,
petseg-decisions (deploy/k8s/base/decisions.yaml), under one key, DECISION_KEY, which every
pod mounts as a file. This module says what that file holds and how it joins the declared
state, the same way in the pods (petseg.serving.pod_decisions) and in the decider
(petseg.rollout.kube_decider):

- the file holds one decided rollout: the trial's own fields and its Decision
  (Rollout.as_dict());
- it binds only the trial it was taken on (Rollout.trial: same version, mode, limits and
  ``started_at``), so a new trial declared in serving.json is never ended by an old decision;
- a file that is malformed, holds no decision, or speaks of another trial changes nothing and
  says why in one line: the declared state stands (the default keeps serving and nothing is
  ever promoted by it);
- a trial that serving.json itself records as decided keeps that record.

``publish`` hands a decided rollout to the instances' serving reports, which each web proxy
re-reads: the local fleet's decider and a pod's own loop both use it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from petseg.serving.launcher import Instance
from petseg.serving.state import ServingState
from torchserve_client import ServingReport
from torchserve_client.rollout import Rollout

DECISION_KEY = "decision.json"
"""The ConfigMap's one key, and so the file's name in the folder where it is mounted."""


class DecisionError(ValueError):
    """A decisions file that cannot be used: the message says where and what is wrong."""


@dataclass(frozen=True)
class Merged:
    """The declared state with the fleet's decision merged in where it applies, and what of the
    decisions file was left unused and why (None: nothing, or no decision yet)."""

    state: ServingState
    ignored: str | None = None


def encode(decided: Rollout) -> str:
    """The file's text for ``decided`` (a rollout with its decision)."""
    return json.dumps(decided.as_dict(), indent=2, sort_keys=True) + "\n"


def parse(text: str, where: str) -> Rollout:
    """The decided rollout in ``text``; a DecisionError naming ``where`` for anything else."""
    try:
        decided = Rollout.from_dict(json.loads(text))
    except ValueError as exc:  # json.JSONDecodeError is one too
        raise DecisionError(f"{where}: not a decided rollout ({exc})") from None
    if decided.active:
        raise DecisionError(f"{where}: the rollout of {decided.version} holds no decision")
    return decided


def read(path: Path) -> Rollout | None:
    """The decided rollout in ``path``; None while there is none (no file: the ConfigMap has no
    key yet, so its mounted folder is empty)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise DecisionError(f"{path}: cannot be read ({exc})") from None
    return parse(text, str(path))


def merged(declared: ServingState, path: Path) -> Merged:
    """``declared`` with the decision in ``path`` recorded on its trial, where it is that trial's
    and the trial still runs; otherwise ``declared`` as it is, and why the file was left."""
    try:
        decided = read(path)
    except DecisionError as exc:
        return Merged(declared, f"{exc}: ignored, the declared trial goes on")
    trial = declared.rollout
    if decided is None or (trial is not None and trial.trial == decided.trial and not trial.active):
        return Merged(declared)
    if trial is None or trial.trial != decided.trial:
        started = decided.started_at
        return Merged(
            declared,
            f"{path}: the decision on the {decided.mode} of {decided.version} (started_at "
            f"{started}) is not about the trial declared now: ignored",
        )
    return Merged(declared.aborted(decided.decision))


def publish(decided: Rollout, members: list[Instance]) -> list[Path]:
    """The decided rollout into each member's report that still carries its trial running;
    the reports written. An instance without a report applies the state at its start."""
    written = []
    for member in members:
        report = ServingReport.read(member.workdir)
        if report is None or not report.rollout:
            continue
        try:
            carried = Rollout.from_dict(report.rollout)
        except ValueError:
            carried = None
        if carried is not None and carried.trial == decided.trial and carried != decided:
            written.append(replace(report, rollout=decided.as_dict()).write(member.workdir))
    return written
