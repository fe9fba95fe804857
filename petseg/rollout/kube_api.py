"""The two calls the fleet's decider makes to the Kubernetes API server from inside its pod: GET
and merge-PATCH one ConfigMap of its namespace.

As every in-cluster client does: the API server at https://kubernetes.default.svc, checked
against the cluster's CA, and the pod's ServiceAccount token as a bearer token; the CA, the
token and the namespace are the files the kubelet mounts under SERVICE_ACCOUNT. The token is
read again for every call: the kubelet replaces the projected token before it expires (about
hourly), and a token held in memory would start failing. The standard library only: the
kubernetes client package would add a dozen dependencies to the model-server image for two
calls.

Every failure is an :class:`ApiError` (an OSError) whose message names the call and what came
back: the HTTP status with the API server's own message (401: the token; 403: what the Role
does not allow; 404: what does not exist; 409: changed meanwhile), or why it was not reached.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

API_SERVER = "https://kubernetes.default.svc"
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TIMEOUT_S = 10.0
MERGE_PATCH = "application/merge-patch+json"


class ApiError(OSError):
    """A call the API server refused, or one that did not reach it."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ApiServer:
    """The API server, as this pod's ServiceAccount reaches it."""

    url: str = API_SERVER
    account: Path = SERVICE_ACCOUNT

    def namespace(self) -> str:
        return self._read("namespace").strip()

    def get_config_map(self, name: str) -> dict[str, Any]:
        return self._call("GET", self._config_map(name))

    def patch_config_map(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Merge ``patch`` into the ConfigMap (RFC 7396: keys it leaves out are kept). A
        ``metadata.resourceVersion`` in it makes the change conditional: 409 if the ConfigMap
        changed since it was read."""
        return self._call("PATCH", self._config_map(name), patch)

    def _config_map(self, name: str) -> str:
        return f"/api/v1/namespaces/{self.namespace()}/configmaps/{name}"

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        token = self._read("token").strip()
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = MERGE_PATCH
        request = urllib.request.Request(self.url + path, data, headers, method=method)
        what = f"{method} {path}"
        context = self._tls()
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S, context=context) as answer:
                found = json.load(answer)
        except urllib.error.HTTPError as exc:
            raise ApiError(f"{what}: HTTP {exc.code} {refusal(exc)}", exc.code) from None
        except urllib.error.URLError as exc:
            raise ApiError(
                f"{what}: the API server {self.url} is not reached ({exc.reason})"
            ) from None
        except (OSError, ValueError) as exc:  # TLS, a reset connection, an answer not JSON
            raise ApiError(f"{what}: no usable answer from {self.url} ({exc})") from None
        if not isinstance(found, dict):
            raise ApiError(f"{what}: the answer is not a Kubernetes object")
        return found

    def _tls(self) -> ssl.SSLContext:
        """TLS that trusts the cluster's CA only."""
        try:
            return ssl.create_default_context(cadata=self._read("ca.crt"))
        except ssl.SSLError as exc:
            raise ApiError(
                f"the cluster's CA {self.account / 'ca.crt'} is unusable ({exc})"
            ) from None

    def _read(self, name: str) -> str:
        """One of the ServiceAccount's files."""
        path = self.account / name
        try:
            return path.read_text()
        except OSError as exc:
            raise ApiError(
                f"no ServiceAccount {name} at {path} ({exc.strerror}): the pod needs "
                "automountServiceAccountToken"
            ) from None


def refusal(error: urllib.error.HTTPError) -> str:
    """The API server's own words for a refusal (its Status object's message), else the
    reason phrase."""
    try:
        message = json.loads(error.read()).get("message")
    except (OSError, ValueError, AttributeError):
        message = None
    return f"{error.reason}: {message}" if message else str(error.reason)
