"""`petseg rollout watch`: the fleet's one decider of a rollout.

Each web proxy counts what it saw of the trial (its operators' /status.json); one proxy's
counts say little when a balancer spreads uploads over several. This loop sums every proxy's
counts for the declared trial, judges the sum with the trial's own limits (Rollout.verdict, the
judgement each proxy's guard makes on its own counts), and when the sum fails them it records
the abort with who decided, why, the figures and when. Every proxy then stops routing to the
candidate, and since the record is part of what every start applies, no restart of a proxy,
TorchServe or instance resumes the trial. Only a new `petseg rollout shadow|canary` (on
Kubernetes: a new trial declared in serving.json) starts a trial again.

Two parts plug into the loop, one for each place a fleet runs:

- the fleet (``fleet_of``): the proxies to read, and the instances whose reports the decider
  may write. Locally: a `petseg cluster` folder, or --instances and --proxy; on Kubernetes
  (petseg.rollout.kube_decider): every ready server pod, from the headless Service's DNS name, and
  no report, since each pod writes its own.
- the recorder (:class:`Recorder`): where the state as decided so far is read and a decision is
  written. Locally: the serving state file, under its lock, and every instance's report at
  once (:class:`StateFile`); on Kubernetes: the ConfigMap petseg-decisions, by a PATCH through
  the API server, which the pods read from their mount (petseg.rollout.kube_decider,
  petseg.serving.decisions).

It decides one thing only, the abort: promotion stays a person's command. What it cannot read
(a state that is malformed, a proxy that does not answer or answers nonsense, a fleet that
cannot be found) is said on stderr, once while it lasts, and decides nothing by itself: the
default keeps serving, the trial goes on as recorded, and the figures of the proxies that did
answer are still judged (an abort on part of the fleet's figures is the safe direction). A
decision that could not be recorded (a state file that cannot be written, an API server that
refuses or cannot be reached) is kept and recorded at a later look, never lost.

Why this design and not Prometheus + Alertmanager (docs/serving.md, "Who decides"): the exact
counts since the trial began come from the proxies themselves, so two proxies that each saw half
of the bad answers add up exactly, with no rate window, no counter reset across a proxy restart
and no extra daemon to run in a local fleet; Prometheus's rule (config/prometheus/alerts.yml)
stays what pages a person.
"""

from __future__ import annotations

import getpass
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from petseg.rollout.trial_status import fetch
from petseg.serving import state
from petseg.serving.decisions import Merged, publish
from petseg.serving.launcher import Instance
from petseg.serving.state import StateError
from torchserve_client.rollout import Decision, Rollout, TrialCounts

INTERVAL_S = 2.0
"""Between two looks at the fleet: with the proxies' next upload, a decision reaches every
proxy well inside 10 s (locally; docs/serving.md says what Kubernetes adds)."""


@dataclass(frozen=True)
class Fleet:
    """What the decider looks at: each instance whose report it may write (its folder holds the
    report its proxy reads; none on Kubernetes) and each proxy's operators' listener."""

    members: list[Instance]
    proxies: list[str]


class Recorder(Protocol):
    """Where the decider reads the state as decided so far and records a decision."""

    def declared(self) -> Merged:
        """The state with every decision recorded so far; a StateError if it cannot be read."""
        ...

    def record(self, trial: Rollout, decision: Decision, members: list[Instance]) -> bool:
        """Record ``decision`` on ``trial`` (and hand it to ``members``' reports where that is
        this recorder's way); False if the record no longer holds that trial running (a person
        changed it, or it was decided meanwhile: that word stands). An OSError or StateError
        when it could not be written: nothing was recorded."""
        ...


@dataclass(frozen=True)
class Sum:
    """The fleet's counts for one trial, and which proxies gave them."""

    counts: TrialCounts
    heard: list[str]
    problems: list[str]


def decider_name() -> str:
    return f"the fleet's decider (petseg rollout watch, {getpass.getuser()}@{socket.gethostname()})"


def fleet_sum(trial: Rollout, proxies: list[str]) -> Sum:
    """Every proxy's counts for ``trial``, added up. A proxy without an answer, or that carries
    another trial (it has not read the new one yet), adds nothing and is named."""
    total, heard, problems = TrialCounts(), [], []
    for proxy in proxies:
        figures = fetch(proxy)
        if figures is None:
            problems.append(f"proxy {proxy}: no answer from its operators' listener")
            continue
        seen = figures.get("rollout") if isinstance(figures, dict) else None
        try:
            carried = None if not seen else Rollout.from_dict(trial_fields(seen))
            if carried is None or carried.trial != trial.trial:
                problems.append(f"proxy {proxy}: does not carry this trial (yet)")
                continue
            total.add(TrialCounts.from_dict(seen.get("counts")))
        except (ValueError, TypeError) as exc:
            problems.append(f"proxy {proxy}: unusable figures ({exc})")
            continue
        heard.append(proxy)
    return Sum(total, heard, problems)


def trial_fields(figures: dict) -> dict:
    """The trial's own settings out of a proxy's figures (which add its counts)."""
    names = set(Rollout.__dataclass_fields__) - {"decision"}
    return {name: value for name, value in figures.items() if name in names}


def judge(trial: Rollout, fleet: Fleet) -> tuple[Decision | None, list[str]]:
    """The decision the fleet's figures call for (None: the trial goes on), and what could
    not be read."""
    found = fleet_sum(trial, fleet.proxies)
    why = trial.verdict(found.counts)
    if why is None:
        return None, found.problems
    figures = {**found.counts.as_dict(), **found.counts.means(), "proxies": found.heard}
    reason = f"{why}, summed over {len(found.heard)} of {len(fleet.proxies)} proxies"
    return Decision("aborted", decider_name(), reason, figures), found.problems


@dataclass(frozen=True)
class StateFile:
    """The local fleet's record: the serving state file itself (the one every instance's start
    applies), changed under its lock, and every instance's report at once."""

    path: Path

    def declared(self) -> Merged:
        return Merged(state.load(self.path))

    def record(self, trial: Rollout, decision: Decision, members: list[Instance]) -> bool:
        with state.locked(self.path):
            declared = state.load(self.path)
            if declared.rollout != trial:
                return False
            after = declared.aborted(decision)
            state.save(after, self.path)
            publish(after.rollout, members)
        return True


class Decider:
    """The loop: look, judge, record; say what could not be read when that changes."""

    def __init__(
        self,
        recorder: Recorder,
        fleet_of: Callable[[], Fleet],
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.recorder = recorder
        self.fleet_of = fleet_of
        self.say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        self._said: list[str] = []
        self._unrecorded: tuple[Rollout, Decision] | None = None
        """A decision taken but not yet recorded (the record could not be written): recorded
        at the next look as it was taken, while its trial is still the declared one."""

    def once(self) -> Decision | None:
        """One look; the decision recorded by it, if any."""
        try:
            found = self.recorder.declared()
        except StateError as exc:
            self._tell([f"cannot read the serving state ({exc}): nothing decided"])
            return None
        notes = [found.ignored] if found.ignored else []
        trial = found.state.rollout
        if trial is None:
            self._tell(notes)
            return None
        try:
            fleet = self.fleet_of()
        except OSError as exc:
            self._tell([*notes, f"cannot find the fleet ({exc}): nothing decided"])
            return None
        if not trial.active:  # decided: make sure every report says so (a lagging one)
            publish(trial, fleet.members)
            self._tell(notes)
            return None
        if self._unrecorded is not None and self._unrecorded[0] == trial:
            decision, problems = self._unrecorded[1], []
        else:
            decision, problems = judge(trial, fleet)
        self._unrecorded = None
        if decision is None:
            self._tell([*notes, *problems])
            return None
        try:
            recorded = self.recorder.record(trial, decision, fleet.members)
        except (OSError, StateError) as exc:
            self._unrecorded = (trial, decision)
            failed = f"the abort of {trial.version} is not recorded yet ({exc}): tried again"
            self._tell([*notes, *problems, failed])
            return None
        self._tell([*notes, *problems])
        if not recorded:
            return None
        self.say(f"rollout of {trial.version} ({trial.mode}) aborted: {decision.reason}")
        return decision

    def run(
        self, stop: threading.Event, interval: float = INTERVAL_S, heartbeat: Path | None = None
    ) -> None:
        """Look every ``interval`` seconds until ``stop``; ``heartbeat`` (a file) touched after
        each look, for a liveness probe to see that the loop goes on."""
        while not stop.is_set():
            self.once()
            if heartbeat is not None:
                heartbeat.touch()
            stop.wait(interval)

    def _tell(self, problems: list[str]) -> None:
        if problems != self._said:
            for line in problems:
                self.say(f"petseg rollout watch: {line}")
            if not problems and self._said:
                self.say("petseg rollout watch: every proxy answers")
            self._said = problems
