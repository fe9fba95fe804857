"""The fleet's decider on Kubernetes (`petseg rollout watch --kubernetes`, the Deployment
petseg-decider): its two parts for petseg.rollout.decider.Decider.

- The fleet: the headless Service petseg-proxies (clusterIP None) selects the server pods, so
  its DNS name resolves to the address of every ready one; each is read on its operators'
  listener (port 5001). No report is written from here: each pod writes its own
  (petseg.serving.pod_decisions).
- The recorder: the state as decided so far is the pod's mounted serving.json (the petseg-config
  ConfigMap) with the mounted decisions file merged in (petseg.serving.decisions); a decision is
  recorded by a merge PATCH of the ConfigMap petseg-decisions through the API server
  (petseg.rollout.kube_api), which the kubelet then copies into every pod's mount. The mount lags
  the API server by the kubelet's sync (a minute or so), so before it writes, the recorder reads the
  ConfigMap itself: a decision already there on the same trial is left as it is, and the PATCH
  carries the resourceVersion it read, so a concurrent change (a person's, or a second decider
  during a network partition) makes it fail with 409 rather than be overwritten.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from petseg.rollout.decider import Fleet
from petseg.rollout.kube_api import ApiError, ApiServer
from petseg.serving import decisions, state
from petseg.serving.decisions import DECISION_KEY, DecisionError, Merged
from petseg.serving.launcher import Instance
from torchserve_client.rollout import Decision, Rollout

PROXIES_SERVICE = "petseg-proxies:5001"
"""The headless Service's name and the proxies' operators' port (deploy/k8s/base/service.yaml)."""
CONFIG_MAP = "petseg-decisions"
"""Where the decider records (deploy/k8s/base/decisions.yaml); the Role lets it patch only this."""
DECISIONS_FILE = Path("/etc/petseg/decisions") / DECISION_KEY
"""Where the pods, the decider's included, mount that ConfigMap (a folder, never subPath:
a subPath mount is never updated)."""


def service_address(text: str) -> tuple[str, int]:
    """NAME:PORT as the --service option takes it; ValueError otherwise."""
    name, _, port = text.rpartition(":")
    if not name or not port.isdigit():
        raise ValueError(f"--service takes NAME:PORT (e.g. {PROXIES_SERVICE}), not {text!r}")
    return name, int(port)


def headless_fleet(name: str, port: int) -> Fleet:
    """Every ready pod behind the headless Service ``name``, each as its listener's URL; an
    OSError naming the Service when its name does not resolve (no ready pod, or no Service)."""
    try:
        found = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OSError(
            f"{name} does not resolve ({exc.strerror}): no ready server pod behind the "
            "headless Service, or no such Service in this namespace"
        ) from None
    addresses = sorted({info[4][0] for info in found})
    return Fleet([], [f"http://{url_host(address)}:{port}" for address in addresses])


def url_host(address: str) -> str:
    """An address as a URL's host: an IPv6 one in brackets."""
    return f"[{address}]" if ":" in address else address


@dataclass(frozen=True)
class ConfigMapRecorder:
    """The decisions ConfigMap, read from its mount and written through the API server."""

    serving: Path
    """The declared state: serving.json of the petseg-config ConfigMap, mounted."""
    mounted: Path
    """The decisions ConfigMap's key, mounted (it lags what the API server holds)."""
    api: ApiServer
    name: str = CONFIG_MAP

    def declared(self) -> Merged:
        return decisions.merged(state.load(self.serving), self.mounted)

    def record(self, trial: Rollout, decision: Decision, members: list[Instance]) -> bool:
        """PATCH the decision in, unless the ConfigMap already holds one on this trial (the
        mount has not caught up yet); an ApiError (an OSError) when the API server refuses or
        cannot be reached."""
        live = self.api.get_config_map(self.name)
        version = (live.get("metadata") or {}).get("resourceVersion")
        if version is None:
            raise ApiError(f"GET ConfigMap {self.name}: the answer holds no resourceVersion")
        held = (live.get("data") or {}).get(DECISION_KEY)
        if held is not None:
            try:
                if decisions.parse(held, f"ConfigMap {self.name}").trial == trial.trial:
                    return False
            except DecisionError:
                pass  # the decider's own key, malformed: replaced by a good record
        patch = {
            "metadata": {"resourceVersion": version},
            "data": {DECISION_KEY: decisions.encode(trial.decided(decision))},
        }
        self.api.patch_config_map(self.name, patch)
        return True
