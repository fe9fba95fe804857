"""`petseg rollout watch`: the fleet's one decider of a rollout.

Each web proxy counts what it saw of the trial (its operators' /status.json); one proxy's
counts say little when a balancer spreads uploads over several. This loop sums every proxy's
counts for the declared trial, judges the sum with the trial's own limits (Rollout.verdict, the
judgement each proxy's guard makes on its own counts), and when the sum fails them it records
the abort in the serving state, under the state's lock, with who decided, why, the figures and
when. It then writes the decided rollout into every instance's serving report, which each proxy
reads on its next upload: every proxy stops routing to the candidate, and since the record is
the state, no restart of a proxy, TorchServe or instance resumes the trial (every start applies
the state). Only a new `petseg rollout shadow|canary` starts a trial again.

It decides one thing only, the abort: promotion stays a person's command. What it cannot read
(a state file that is malformed, a proxy that does not answer or answers nonsense) is said on
stderr and decides nothing by itself: the default keeps serving, the trial goes on as recorded,
and the figures of the proxies that did answer are still judged (an abort on part of the
fleet's figures is the safe direction).

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
from dataclasses import dataclass, replace
from pathlib import Path

from petseg import state
from petseg.launcher import Instance
from petseg.state import StateError
from petseg.trial_status import fetch
from torchserve_client import ServingReport
from torchserve_client.rollout import Decision, Rollout, TrialCounts

INTERVAL_S = 2.0
"""Between two looks at the fleet: with the proxies' next upload, a decision reaches every
proxy well inside 10 s."""


@dataclass(frozen=True)
class Fleet:
    """What the decider looks at: each instance (its folder holds the report its proxy reads)
    and each proxy's operators' listener."""

    members: list[Instance]
    proxies: list[str]


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


def record(state_file: Path, trial: Rollout, decision: Decision, members: list[Instance]) -> bool:
    """Write ``decision`` on ``trial`` into the state and every report; False if the state no
    longer holds that trial running (a person changed it meanwhile: their word stands)."""
    with state.locked(state_file):
        declared = state.load(state_file)
        if declared.rollout != trial:
            return False
        after = declared.aborted(decision)
        state.save(after, state_file)
        publish(after.rollout, members)
    return True


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


class Decider:
    """The loop: look, judge, record; say what could not be read when that changes."""

    def __init__(self, state_file: Path, fleet_of: Callable[[], Fleet], say=None) -> None:
        self.state_file = Path(state_file)
        self.fleet_of = fleet_of
        self.say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        self._said: list[str] = []

    def once(self) -> Decision | None:
        """One look; the decision recorded by it, if any."""
        try:
            declared = state.load(self.state_file)
        except StateError as exc:
            self._tell([f"cannot read the serving state ({exc}): nothing decided"])
            return None
        trial = declared.rollout
        fleet = self.fleet_of()
        if trial is None:
            self._tell([])
            return None
        if not trial.active:  # decided: make sure every report says so (a lagging one)
            publish(trial, fleet.members)
            self._tell([])
            return None
        decision, problems = judge(trial, fleet)
        self._tell(problems)
        if decision is None or not record(self.state_file, trial, decision, fleet.members):
            return None
        self.say(f"rollout of {trial.version} ({trial.mode}) aborted: {decision.reason}")
        return decision

    def run(self, stop: threading.Event, interval: float = INTERVAL_S) -> None:
        while not stop.is_set():
            self.once()
            stop.wait(interval)

    def _tell(self, problems: list[str]) -> None:
        if problems != self._said:
            for line in problems:
                self.say(f"petseg rollout watch: {line}")
            if not problems and self._said:
                self.say("petseg rollout watch: every proxy answers")
            self._said = problems
