"""A pod's side of the fleet's decisions (`petseg serve --foreground --decisions FILE`).

The pod mounts the ConfigMap petseg-decisions as a folder, FILE being its one key; the kubelet
rewrites the file in place when the fleet's decider patches the ConfigMap (a subPath mount would
never change: deploy/k8s/base/deployment.yaml mounts the folder).

- At start, the state this pod applies is its serving.json with the decision on its trial
  merged in (petseg.serving.decisions), written as APPLIED_FILE into the pod's working folder and
  applied from there: a pod or container that restarts stays aborted, and every `petseg`
  command in the pod (status, rollout status, models) reads the state as decided.
- While TorchServe runs, the file is read again every FOLLOW_INTERVAL_S; once it holds a
  decision on the running trial, that copy is rewritten and the decided rollout goes into this
  pod's serving report, which the web container re-reads: its proxy stops routing to the
  candidate without a restart.
- A file that is malformed or speaks of another trial gets one line in the container's log
  while it lasts, and changes nothing. What this pod has once applied of a decision stays, even
  should the file lose it: no look resumes a trial.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from petseg.serving import decisions, state
from petseg.serving.decisions import publish
from petseg.serving.launcher import Instance
from petseg.serving.state import ServingState

APPLIED_FILE = "serving-state.json"
FOLLOW_INTERVAL_S = 3.0
"""Between two reads of the decisions file: small beside the kubelet's own sync delay."""


def say_in_log(line: str) -> None:
    print(f"petseg: {line}", file=sys.stderr, flush=True)


class Follower:
    """This pod's applied state, kept up with the fleet's decisions."""

    def __init__(
        self,
        serving: Path,
        decisions_file: Path,
        instance: Instance,
        say: Callable[[str], None] = say_in_log,
    ) -> None:
        """Merge and write the state to apply; a StateError for a serving.json that cannot be
        read (a broken deployment, as without decisions)."""
        self.decisions_file = Path(decisions_file)
        self.instance = instance
        self.path = instance.workdir / APPLIED_FILE
        self.say = say
        self._ignored: str | None = None
        declared = state.load(serving)
        self.applied = self._merged(declared)
        state.save(self.applied, self.path)
        if self.applied != declared:
            self._tell_decided("applies")

    def look(self) -> None:
        """Read the decisions file again; apply a decision on the running trial."""
        after = self._merged(self.applied)
        if after == self.applied:
            return
        try:
            state.save(after, self.path)
            publish(after.rollout, [self.instance])
        except OSError as exc:  # the in-memory folder full, say: tried again at the next look
            self.say(f"cannot write {self.instance.workdir} ({exc}): the fleet's decision waits")
            return
        self.applied = after
        self._tell_decided("now applies")

    def _merged(self, declared: ServingState) -> ServingState:
        found = decisions.merged(declared, self.decisions_file)
        if found.ignored != self._ignored and found.ignored:
            self.say(found.ignored)
        self._ignored = found.ignored
        return found.state

    def _tell_decided(self, verb: str) -> None:
        trial = self.applied.rollout
        decision = trial.decision
        self.say(
            f"this pod {verb} the fleet's decision: the {trial.mode} of {trial.version} was "
            f"{decision.outcome} by {decision.by}: {decision.reason}"
        )
