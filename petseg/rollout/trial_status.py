"""`petseg rollout status`: the rollout as the state declares it (and, once decided, who ended
it, why and when), as each instance applied it, and what each web proxy sees: the versions
served and its trial's figures (its operators' listener, /status.json)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from petseg.serving import state
from petseg.serving.launcher import Instance
from torchserve_client import ServingReport

DEMO_PROXY = "http://127.0.0.1:5001"
"""The operators' listener of `petseg run` (`make run`)."""


def show(state_file: Path, members: list[Instance], proxies: list[str]) -> int:
    """Print all of it; exit status 1 if a proxy stopped the trial by itself."""
    declared = state.load(state_file).rollout
    print(f"declared ({state_file}): " + (describe(declared.as_dict()) if declared else "none"))
    for member in members:
        report = ServingReport.read(member.workdir)
        applied = "not applied" if report is None else describe(report.rollout)
        print(f"applied by {member.workdir}: {applied}")
    stopped = False
    for proxy in proxies:
        figures = fetch(proxy)
        if figures is None:
            print(f"proxy {proxy}: no answer from its operators' listener")
            continue
        print(f"proxy {proxy}:")
        for row in figures["versions"]:
            default = " (default)" if row["default"] else ""
            print(f"  {row['version']}{default}: {row['ready_workers']} of {row['workers']} ready")
        trial = figures["rollout"]
        if trial is not None:
            stopped |= bool(trial["stopped_here"])
            print(
                f"  candidate requests {trial['candidate_requests']} "
                f"({trial['candidate_failures']} failed), shadow comparisons "
                f"{trial['shadow_compared']}, mean agreement {trial['mean_agreement']}, "
                f"mean IoU {trial['mean_iou']}"
            )
            print(f"  stopped by this proxy: {trial['stopped_here'] or 'no'}")
            if trial.get("decision"):
                print(f"  decided: {decided(trial['decision'])}")
    return 1 if stopped else 0


def describe(rollout: dict[str, Any] | None) -> str:
    if not rollout:
        return "none"
    trial = (
        f"{rollout['version']} as a {rollout['mode']} of {rollout['percent']:g}% "
        f"(stops above {rollout['max_error_ratio']:.0%} candidate failures or below "
        f"{rollout['min_agreement']} mean agreement, after {rollout['min_requests']} requests)"
    )
    if rollout.get("decision"):
        return f"{trial}; {decided(rollout['decision'])}"
    return trial


def decided(decision: dict[str, Any]) -> str:
    """A decision in one line: what, by whom, when, why."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(decision["at"]))
    return f"{decision['outcome']} by {decision['by']} at {when}: {decision['reason']}"


def fetch(proxy: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"{proxy.rstrip('/')}/status.json", timeout=10) as answer:
            return json.load(answer)
    except (OSError, ValueError, urllib.error.URLError):
        return None
