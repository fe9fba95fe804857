"""`petseg models register|scale|set-default|unregister|apply` and `petseg rollout
shadow|canary|promote|abort`: the running instance(s) and the serving state, changed together.

A change goes to the first instance's TorchServe first; only once it accepted is the state
file written (nothing TorchServe refused ever reaches it), under the state's lock and by an
atomic replace (petseg.serving.state). Then every instance is brought to the new state (for a fleet,
the change reaches the others that way; each gets a fresh report).

Where the deployment declares the state (a pod's ConfigMap, a container image: the instance's
start recorded it as read-only), a change holds for that instance only until it restarts, and
the command says so and how to make it durable.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import socket
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from petseg.serving import reconcile, state
from petseg.serving.launcher import Instance
from petseg.serving.state import STATE_FILE, ServingState, StateError, VersionSpec
from torchserve_client import ServingReport, TorchServeError
from torchserve_client.rollout import Decision, Rollout

DURABLE_ON_KUBERNETES = (
    "to keep it, change config/serving.json and roll it out "
    "(kubectl apply -k deploy/k8s/overlays/<cpu|gpu>: the ConfigMap's new hash rolls the pods)"
)


def trial(args: argparse.Namespace) -> Rollout:
    """The rollout `petseg rollout shadow|canary VERSION` declares: a new trial, whatever was
    decided of the last one."""
    thresholds = {
        name: getattr(args, name)
        for name in ("max_error_ratio", "min_agreement", "min_requests")
        if getattr(args, name) is not None
    }
    try:
        return Rollout(
            args.version, args.action, args.percent, started_at=time.time(), **thresholds
        )
    except ValueError as exc:
        raise StateError(str(exc)) from None


def operator() -> str:
    """Who typed the command, for the record of a decision."""
    return f"{getpass.getuser()}@{socket.gethostname()} (petseg rollout abort)"


def wanted(args: argparse.Namespace, declared: ServingState, store: Path) -> ServingState:
    """The state after the command: checked before TorchServe is asked."""
    if args.action in ("shadow", "canary"):
        return declared.with_rollout(trial(args))
    if args.action == "promote":
        return declared.promoted()
    if args.action == "abort":
        return declared.aborted(Decision("aborted", operator(), args.reason))
    if args.action == "register":
        version = state.archive_version(store, args.archive)
        return declared.registered(version, VersionSpec(args.archive, args.workers))
    if args.action == "scale":
        return declared.scaled(args.version or declared.default, args.workers)
    if args.action == "set-default":
        return declared.with_default(args.version)
    return declared.unregistered(args.version)


def change_live(args: argparse.Namespace, instance: Instance, declared: ServingState) -> Any:
    """The command's call(s) to one TorchServe: its answer, or a TorchServeError. A rollout
    changes nothing there but its default at promotion; its candidate must be served."""
    client = instance.client(timeout=args.timeout)
    if args.action in ("shadow", "canary"):
        client.describe(args.version)  # a TorchServeError (404) if it is not registered
        return f"{args.version} goes on trial: {args.action} of {args.percent:g}%"
    if args.action == "promote":
        return client.set_default(declared.on_trial().version)
    if args.action == "abort":
        version = declared.on_trial().version
        return f"the rollout of {version} ends; the default serves every upload"
    if args.action == "register":
        version = state.archive_version(instance.model_store, args.archive)
        spec = VersionSpec(args.archive, args.workers)
        return reconcile.register(client, instance.model_store, version, spec)
    if args.action == "scale":
        return client.scale(args.workers, args.version)
    if args.action == "set-default":
        return client.set_default(args.version)
    return client.unregister(args.version)


def state_of(instance: Instance, chosen: Path | None) -> tuple[Path, bool]:
    """The state file a change goes to and whether it may be written: the one ``chosen``
    (--state), else the one the instance's start applied, else config/serving.json."""
    report = ServingReport.read(instance.workdir)
    if chosen is not None:
        return chosen, report is None or report.durable
    if report is not None:
        return Path(report.state), report.durable
    return STATE_FILE, True


def command(args: argparse.Namespace, members: list[Instance], show: Any) -> int:
    """Run the change (or `apply`) against ``members``; exit status 2 if one failed."""
    state_file, durable = state_of(members[0], args.state)
    if args.action != "apply" and (not durable or args.read_only_state):
        return change_here_only(args, members, state_file, show)
    # The lock is held until the last instance is brought to the state: an instance brought to
    # an older reading after another operator's change would undo that change.
    with state.locked(state_file) if durable else contextlib.nullcontext():
        if args.action != "apply":
            declared = state.load(state_file)
            after = wanted(args, declared, members[0].model_store)
            show(change_live(args, members[0], declared))
            state.save(after, state_file)
            print(f"serving state {state_file}: {summary(after)}", flush=True)
        return bring_all(members, state_file, durable)


def bring_all(members: list[Instance], state_file: Path, durable: bool) -> int:
    """Apply the state to every member, each report rewritten; exit 2 if any is left short
    (one that cannot be reached is said so, and the others are still done)."""
    failed = 0
    for member in members:
        try:
            report = reconcile.apply_state(
                member.client(), state_file, member.model_store, member.workdir, durable
            )
        except TorchServeError as exc:
            print(f"petseg: error: {member.workdir}: {exc}", file=sys.stderr, flush=True)
            failed += 1
            continue
        for line in reconcile.describe(report)[1:]:
            print(f"{member.workdir}: {line.strip()}", flush=True)
        failed += bool(report.problems)
    return 2 if failed else 0


def change_here_only(
    args: argparse.Namespace, members: list[Instance], state_file: Path, show: Any
) -> int:
    """A change the state cannot take: made live, noted in each instance's report."""
    words = " ".join(str(part) for part in args.words)
    for member in members:
        report = ServingReport.read(member.workdir)
        here = state.load(state_file) if report is None else here_now(report)
        show(change_live(args, member, here))
        if report is not None:
            rollout = report.rollout
            if args.command == "rollout":
                after = wanted(args, here, member.model_store).rollout
                rollout = None if after is None else after.as_dict()
            changes = [*report.live_changes, words]
            replace(report, live_changes=changes, rollout=rollout).write(member.workdir)
    print(
        f"petseg: note: '{words}' changed the running instance only, until it restarts: its "
        f"serving state ({state_file}) is declared by the deployment; {DURABLE_ON_KUBERNETES}",
        file=sys.stderr,
    )
    return 0


def here_now(report: ServingReport) -> ServingState:
    """What a live-only change starts from: the instance's state with the rollout its report
    holds now (a rollout started or ended in this pod alone)."""
    declared = state.load(Path(report.state))
    rollout = None if report.rollout is None else Rollout.from_dict(report.rollout)
    return replace(declared, rollout=rollout)


def summary(declared: ServingState) -> str:
    versions = ", ".join(
        f"{v} ({spec.archive}, {spec.workers if spec.workers is not None else 'its'} workers)"
        for v, spec in sorted(declared.versions.items())
    )
    trial = ""
    if declared.rollout is not None:
        rollout = declared.rollout
        trial = f"; rollout {rollout.version} as a {rollout.mode} of {rollout.percent:g}%"
        if not rollout.active:
            trial += f", {rollout.decision.outcome}: {rollout.decision.reason}"
    return f"default {declared.default}; versions {versions or 'none'}{trial}"
