"""What the operators' /status page (and /status.json) shows: what an operator needs where no
Grafana is at hand. Is the model served, which versions TorchServe holds and their ready
workers, whether TorchServe answers, what of the serving state it could not serve, and a
rollout's state and figures. Rates, latencies and errors over time are the dashboard's
(config/grafana/petseg-dashboard.json, from /metrics).

Each look asks TorchServe's management API (the health call, the default and the versions);
nothing of its answers beyond version names and worker counts is shown: no key, URL or path.
"""

from __future__ import annotations

from typing import Any

from frontend_server.rollout import Trial
from torchserve_client import TorchServe, TorchServeError


def versions(client: TorchServe) -> list[dict[str, Any]]:
    """Each version TorchServe holds, the default first, with its READY and all workers; none
    when TorchServe cannot say."""
    try:
        default = client.default_version()
        described = client.describe()
    except TorchServeError:
        return []
    found = [
        {
            "version": entry["modelVersion"],
            "default": entry["modelVersion"] == default,
            "ready_workers": sum(w.get("status") == "READY" for w in entry["workers"]),
            "workers": len(entry["workers"]),
        }
        for entry in described
    ]
    return sorted(found, key=lambda v: not v["default"])


def status(client: TorchServe, trial: Trial) -> dict[str, Any]:
    """Everything the page shows. Health's ``detail`` is left out: it names URLs and paths."""
    health = client.health()
    shown = {name: value for name, value in health.as_dict().items() if name != "detail"}
    return {
        "served": health.ready,
        **shown,
        "versions": versions(client) if health.reachable else [],
        "rollout": trial.figures(),
    }
