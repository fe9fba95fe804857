"""Make a running TorchServe serve what the serving state declares, and say what it did.

Every start runs `apply_state` (petseg serve and run, each cluster instance, the model-server
container): it registers what is missing (the default first, so that it is the default from its
first moment), scales each version to its declared workers, sets the default and unregisters
what the state no longer names. A version that cannot be served as declared (its archive
missing, corrupt or holding another version; TorchServe refusing it) becomes a problem named in
the report, never a reason to serve nothing: the other versions still go live.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from petseg.serving.state import ArchiveError, ServingState, VersionSpec, archive_version, load
from torchserve_client import ServingReport, TorchServe, TorchServeError


def live_versions(client: TorchServe) -> dict[str, dict[str, Any]]:
    """The versions TorchServe holds now, each as the management API describes it."""
    try:
        return {entry["modelVersion"]: entry for entry in client.describe()}
    except TorchServeError as exc:
        if exc.status == 404:  # no version of the model at all
            return {}
        raise


def register(client: TorchServe, store: Path, version: str, spec: VersionSpec) -> str:
    """Register ``version`` as ``spec`` declares it, with exactly its workers (none declared:
    TorchServe's ``default_workers_per_model``). An archive whose model-config.yaml names
    minWorkers (older archives of petseg name 2) starts those whatever the call asks, so a different
    count is scaled to afterwards. Returns what was done, in words."""
    held = archive_version(store, spec.archive)
    if held != version:
        raise ArchiveError(f"{spec.archive} holds version {held}, not {version}")
    client.register(spec.archive, spec.workers, spec.batch_size, spec.max_batch_delay_ms)
    started = client.describe(version)[0]["minWorkers"]
    done = f"registered {version} ({spec.archive}) with {started} workers"
    if spec.workers is not None and spec.workers != started:
        client.scale(spec.workers, version)
        done = (
            f"registered {version} ({spec.archive}) with {spec.workers} workers "
            f"(its model-config.yaml asks for {started})"
        )
    return done


def apply(client: TorchServe, declared: ServingState, store: Path) -> tuple[list[str], list[str]]:
    """Bring TorchServe to ``declared``; (what was done, what could not be) in words."""
    actions: list[str] = []
    problems: list[str] = []
    live = live_versions(client)
    for version in sorted(declared.versions, key=lambda v: (v != declared.default, v)):
        spec = declared.versions[version]
        try:
            if version not in live:
                actions.append(register(client, store, version, spec))
                continue
            held = live[version]
            if spec.workers is not None and held["minWorkers"] != spec.workers:
                client.scale(spec.workers, version)
                actions.append(f"scaled {version} to {spec.workers} workers")
            for setting, key in (
                ("batch_size", "batchSize"),
                ("max_batch_delay_ms", "maxBatchDelay"),
            ):
                wanted = getattr(spec, setting)
                if wanted is not None and held[key] != wanted:
                    problems.append(
                        f"version {version}: {setting} is {held[key]}, declared {wanted}; "
                        "TorchServe changes it only at registration (restart the instance)"
                    )
        except (ArchiveError, TorchServeError) as exc:
            problems.append(f"version {version} ({spec.archive}): {exc}")
    live = live_versions(client)
    if declared.default in live:
        if client.default_version() != declared.default:
            client.set_default(declared.default)
            actions.append(f"set {declared.default} as the default")
    elif declared.default is not None:
        serving = client.default_version() if live else "nothing"
        problems.append(f"the default version {declared.default} is not served ({serving} is)")
    for version in sorted(set(live) - set(declared.versions)):
        try:
            client.unregister(version)
            actions.append(f"unregistered {version} (not in the state)")
        except TorchServeError as exc:
            problems.append(f"version {version} is not in the state but stays: {exc}")
    return actions, problems


def apply_state(
    client: TorchServe, state_file: Path, store: Path, workdir: Path, durable: bool
) -> ServingReport:
    """Apply the state in ``state_file`` and write the instance's report into ``workdir``
    (from then on it counts as ready). A state file that cannot be read raises StateError:
    a start with a broken state fails loudly instead of serving something undeclared."""
    declared = load(state_file)
    actions, problems = apply(client, declared, store)
    rollout = declared.rollout
    if rollout is not None and rollout.active and rollout.version not in live_versions(client):
        problems.append(f"the rollout's version {rollout.version} is not served: no trial")
        rollout = None
    trial = None if rollout is None else rollout.as_dict()
    report = ServingReport(str(Path(state_file).resolve()), durable, actions, problems, [], trial)
    report.write(workdir)
    return report


def describe(report: ServingReport) -> list[str]:
    """The report as lines for a terminal."""
    lines = [f"serving state: {report.state} ({'durable' if report.durable else 'read-only'})"]
    lines += [f"  {action}" for action in report.actions]
    lines += [f"  PROBLEM: {problem}" for problem in report.problems]
    lines += [f"  changed here only, until a restart: {change}" for change in report.live_changes]
    if report.rollout:
        trial = report.rollout
        line = f"  rollout: {trial['version']} as a {trial['mode']} of {trial['percent']:g}%"
        if trial.get("decision"):
            line += f", {trial['decision']['outcome']}: {trial['decision']['reason']}"
        lines.append(line)
    return lines
