"""A rollout: a candidate version on trial beside the default, its running figures, the one
judgement of those figures, and the decision that ends a trial.

Three places share this module: the operator's tools write the trial into the serving state,
each web proxy carries it out and counts what it saw (frontend_server.rollout), and the fleet's
one decider (`petseg rollout watch`, petseg.rollout.decider) sums every proxy's counts and, when the
sum crosses the trial's limits, records the abort. The proxy's own guard and the decider judge
with the same function, :meth:`Rollout.verdict`, so a limit means one thing everywhere.

A decision is part of the record, not a flag in one process: an aborted rollout stays in the
serving state with who decided, why, the figures and when, and no restart resumes it; only a new
`petseg rollout shadow|canary` (a new ``started_at``) starts a trial again.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

ROLLOUT_MODES = ("shadow", "canary")
OUTCOMES = ("aborted",)
"""What a decision can say. Promotion is never decided by a machine: a person promotes."""


def strict_fields(cls: type, data: Any, what: str, required: set[str]) -> dict[str, Any]:
    """``data`` as keyword arguments of the dataclass ``cls``: unknown or missing keys refused."""
    if not isinstance(data, dict):
        raise ValueError(f"{what} must be a JSON object")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{what}: unknown key(s) {unknown}; known: {sorted(known)}")
    missing = sorted(required - set(data))
    if missing:
        raise ValueError(f"{what}: missing {missing}")
    return data


@dataclass(frozen=True)
class Decision:
    """Why a trial ended without a promotion: recorded in the serving state, shown by
    `petseg rollout status` and every proxy's /status."""

    outcome: str
    by: str
    """Who or what decided: `petseg rollout abort` by a person, or the fleet's decider."""
    reason: str
    figures: dict[str, Any] = field(default_factory=dict)
    """The fleet's figures the decision was taken on (empty for a person's abort)."""
    at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"decision outcome {self.outcome!r}: use one of {OUTCOMES}")
        for name in ("by", "reason"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"decision {name} must be a non-empty string")
        if not isinstance(self.figures, dict):
            raise ValueError("decision figures must be a JSON object")
        if isinstance(self.at, bool) or not isinstance(self.at, int | float):
            raise ValueError(f"decision at must be a time in seconds, not {self.at!r}")

    @classmethod
    def from_dict(cls, data: Any) -> Decision:
        return cls(
            **strict_fields(cls, data, "the rollout's decision", {"outcome", "by", "reason"})
        )


@dataclass
class TrialCounts:
    """A trial's running totals: one proxy's since the trial began there, or the fleet's sum.
    Totals, never means, so that proxies' counts add up exactly."""

    requests: int = 0
    """Candidate requests: canary answers and shadow requests."""
    failed: int = 0
    compared: int = 0
    """Shadow comparisons."""
    agreement: float = 0.0
    """Sum of the compared photos' pixel agreement."""
    iou: dict[str, float] = field(default_factory=dict)
    """Per class: sum of IoU over the photos where the class was present."""
    classes: dict[str, int] = field(default_factory=dict)
    """Per class: photos where it was present."""

    def add(self, other: TrialCounts) -> None:
        self.requests += other.requests
        self.failed += other.failed
        self.compared += other.compared
        self.agreement += other.agreement
        for name, total in other.iou.items():
            self.iou[name] = self.iou.get(name, 0.0) + total
            self.classes[name] = self.classes.get(name, 0) + other.classes.get(name, 0)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> TrialCounts:
        """A proxy's counts as its /status.json gives them; ValueError for anything else."""
        counts = cls(**strict_fields(cls, data, "trial counts", {f.name for f in fields(cls)}))
        numbers = (counts.requests, counts.failed, counts.compared, counts.agreement)
        if any(isinstance(n, bool) or not isinstance(n, int | float) or n < 0 for n in numbers):
            raise ValueError(f"trial counts must be numbers >= 0: {data}")
        if not isinstance(counts.iou, dict) or not isinstance(counts.classes, dict):
            raise ValueError(f"trial counts: iou and classes must be objects: {data}")
        return counts

    def means(self) -> dict[str, Any]:
        """What people read: mean agreement and mean IoU per class (None before any photo)."""
        compared = self.compared
        return {
            "mean_agreement": round(self.agreement / compared, 5) if compared else None,
            "mean_iou": {
                name: round(total / self.classes[name], 5)
                for name, total in sorted(self.iou.items())
                if self.classes.get(name)
            },
        }


@dataclass(frozen=True)
class Rollout:
    """A candidate version on trial beside the default (petseg's serving state declares it,
    the web proxies carry it out). ``shadow``: ``percent`` of uploads are also sent to the
    candidate and the two masks compared, the user always answered by the default; ``canary``:
    ``percent`` of uploads are answered by the candidate. After ``min_requests`` candidate
    requests, more than ``max_error_ratio`` of them failed, or (shadow) the masks agreed on less
    than ``min_agreement`` of their pixels: the trial fails (:meth:`verdict`)."""

    version: str
    mode: str
    percent: float
    max_error_ratio: float = 0.05
    min_agreement: float = 0.90
    min_requests: int = 50
    started_at: float | None = None
    """When `petseg rollout shadow|canary` began the trial: two trials with the same settings
    are told apart by it, so a decision on one never binds the next."""
    decision: Decision | None = None
    """None while the trial runs; the record of its end otherwise (it then takes no upload)."""

    def __post_init__(self) -> None:
        if self.mode not in ROLLOUT_MODES:
            raise ValueError(f"rollout mode {self.mode!r}: use one of {', '.join(ROLLOUT_MODES)}")
        for name, value, low, high in (
            ("percent", self.percent, 0.0, 100.0),
            ("max_error_ratio", self.max_error_ratio, 0.0, 1.0),
            ("min_agreement", self.min_agreement, 0.0, 1.0),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"rollout {name} must be a number, not {value!r}")
            if not low <= value <= high or (name == "percent" and value == 0):
                raise ValueError(f"rollout {name} must lie in ({low:g}, {high:g}], not {value}")
        count = self.min_requests
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"rollout min_requests must be a whole number >= 1, not {count!r}")
        started = self.started_at
        if started is not None and (
            isinstance(started, bool) or not isinstance(started, int | float)
        ):
            raise ValueError(f"rollout started_at must be a time in seconds, not {started!r}")

    @classmethod
    def from_dict(cls, data: Any) -> Rollout:
        """Strict: an unknown key is an error, not ignored."""
        given = dict(strict_fields(cls, data, "the rollout", {"version", "mode", "percent"}))
        if given.get("decision") is not None:
            given["decision"] = Decision.from_dict(given["decision"])
        return cls(**given)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.decision is None:
            del data["decision"]
        if self.started_at is None:
            del data["started_at"]
        return data

    @property
    def active(self) -> bool:
        """Whether the trial takes uploads: no decision ended it."""
        return self.decision is None

    @property
    def trial(self) -> Rollout:
        """The trial itself, whatever was decided of it: what two records must share to speak
        of the same trial."""
        return replace(self, decision=None)

    def decided(self, decision: Decision) -> Rollout:
        return replace(self, decision=decision)

    def verdict(self, counts: TrialCounts) -> str | None:
        """Why the trial fails on ``counts``, or None while it may go on."""
        if counts.requests >= self.min_requests:
            ratio = counts.failed / counts.requests
            if ratio > self.max_error_ratio:
                return (
                    f"{counts.failed} of {counts.requests} candidate requests failed "
                    f"({ratio:.1%} > max_error_ratio {self.max_error_ratio:.1%})"
                )
        if counts.compared >= self.min_requests:
            mean = counts.agreement / counts.compared
            if mean < self.min_agreement:
                return (
                    f"mean shadow agreement {mean:.4f} over {counts.compared} photos < "
                    f"min_agreement {self.min_agreement}"
                )
        return None
