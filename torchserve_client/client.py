"""HTTP calls to one TorchServe for one model: inference, health and management.

Every call carries the right key from the key file. A key TorchServe refuses (expired, or
rotated by someone else) is renewed once, through the token API, and the call is retried.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode

from handler.protocol import (
    DEFAULT_OUTPUT,
    MODEL_NAME,
    OUTPUTS,
    REQUEST_ID_HEADER,
    REQUEST_ID_PARAM,
    TOLERANCE_HEADER,
    upload_content_type,
)
from torchserve_client.errors import KeyFileError, TorchServeError, Unreachable
from torchserve_client.keys import KeyFile
from torchserve_client.report import ServingReport
from torchserve_client.transport import Body, Connections, Reply

INVALID_KEY = "InvalidKeyException"
"""In the body of TorchServe 0.12's HTTP 400 for a wrong, missing or expired key."""
MANAGEMENT_TIMEOUT_S = 300.0
"""Registering or scaling synchronously waits for workers to load and warm up."""
HEALTH_TIMEOUT_S = 5.0
USER_AGENT = "petseg-client"
"""Unless the caller names itself: TorchServe's access log shows it."""


@dataclass(frozen=True)
class Health:
    """Whether TorchServe answers, how many workers of the model are READY, and what its start
    made of the serving state (None: not applied yet)."""

    reachable: bool
    ready_workers: int
    workers: int
    detail: str
    report: ServingReport | None = None

    @property
    def ready(self) -> bool:
        """Ready for traffic: the serving state applied, and a worker of the default READY."""
        return self.report is not None and self.ready_workers > 0

    @property
    def problems(self) -> list[str]:
        return self.report.problems if self.report is not None else []

    def as_dict(self) -> dict[str, Any]:
        return {
            "torchserve": "up" if self.reachable else "down",
            "ready_workers": self.ready_workers,
            "workers": self.workers,
            "detail": self.detail,
            "serving_state": "applied" if self.report is not None else "not applied yet",
            "problems": self.problems,
        }


class TorchServe:
    """A client of one TorchServe and one model name (all its versions).

    Safe to share between threads: each thread keeps its own connections. ``on_renewal``
    is called with the kind of key ('inference', 'management') each time a refused key is
    renewed: the web proxy counts renewals with it, without this client knowing of metrics.
    """

    def __init__(
        self,
        inference_url: str,
        management_url: str,
        key_file: Path,
        model: str = MODEL_NAME,
        timeout: float = 60.0,
        user_agent: str | None = None,
        on_renewal: Callable[[str], None] | None = None,
    ) -> None:
        self.inference_url = inference_url.rstrip("/")
        self.management_url = management_url.rstrip("/")
        self.keys = KeyFile(key_file)
        self.model = model
        self.timeout = timeout
        self.on_renewal = on_renewal
        self.connections = Connections(user_agent or USER_AGENT)

    def close(self) -> None:
        """Close this thread's connections (the next call opens new ones)."""
        self.connections.close()

    def _send(
        self,
        method: str,
        url: str,
        key: str,
        timeout: float,
        body: Body = None,
        headers: dict[str, str] | None = None,
        replayable: bool = False,
    ) -> Reply:
        headers = {**(headers or {}), "Authorization": f"Bearer {key}"}
        return self.connections.send(method, url, headers, body, timeout, replayable)

    def call(
        self,
        kind: str,
        method: str,
        path: str,
        timeout: float | None = None,
        params: dict[str, Any] | None = None,
        body: Body = None,
        headers: dict[str, str] | None = None,
        replayable: bool = False,
    ) -> Reply:
        """One request to the ``kind`` API ('inference' or 'management') with its key; a
        refused key is renewed and the request sent once more. ``replayable``: it has no side
        effects, so it may be sent again if a kept-alive connection drops it unanswered."""
        base = self.inference_url if kind == "inference" else self.management_url
        url = base + path + (f"?{urlencode(params)}" if params else "")
        timeout = self.timeout if timeout is None else timeout
        key = self.keys.key(kind)
        response = self._send(method, url, key, timeout, body, headers, replayable)
        if response.status_code == 400 and INVALID_KEY in response.text:
            fresh = self.keys.renewed(kind, key, lambda: self.rotate(kind))
            if self.on_renewal is not None:
                self.on_renewal(kind)
            response = self._send(method, url, fresh, timeout, body, headers, replayable)
            if response.status_code == 400 and INVALID_KEY in response.text:
                raise TorchServeError(f"TorchServe refused the renewed {kind} key", 400)
        return response

    def rotate(self, kind: str) -> str:
        """A new ``kind`` key from the token API (TorchServe rewrites its key file)."""
        url = f"{self.management_url}/token?type={kind}"
        response = self._send("GET", url, self.keys.key("API"), self.timeout)
        if response.status_code != 200:
            raise TorchServeError(
                f"the token API refused a new {kind} key: {error_message(response)}",
                response.status_code,
            )
        return self.keys.key(kind)

    # -- inference ---------------------------------------------------------------------------
    def predict(
        self,
        image: bytes | IO[bytes],
        content_type: str | None = None,
        output: str = DEFAULT_OUTPUT,
        version: str | None = None,
        tolerance: float | None = None,
        request_id: str | None = None,
    ) -> Reply:
        """Send one image (bytes, or a stream sent without copying) and return the answer as
        TorchServe gave it: 200 with the ``output``, or its error status and JSON message.
        ``tolerance``: polygon simplification in pixels (``parse_tolerance`` checks it);
        ``request_id``: goes in a header (the handler logs it) and in the URL (TorchServe's
        access log shows it)."""
        headers = {"Accept": OUTPUTS[output], "Content-Type": upload_content_type(content_type)}
        params = {}
        if tolerance is not None:
            headers[TOLERANCE_HEADER] = str(tolerance)
        if request_id is not None:
            headers[REQUEST_ID_HEADER] = params[REQUEST_ID_PARAM] = request_id
        path = f"/predictions/{self.model}" + (f"/{version}" if version else "")
        return self.call(
            "inference", "POST", path, params=params, body=image, headers=headers, replayable=True
        )

    # -- management ----------------------------------------------------------------------------
    def manage(self, method: str, path: str, **params: Any) -> Any:
        """A management call's JSON answer; TorchServe's refusal as a TorchServeError."""
        query = {name: value for name, value in params.items() if value is not None}
        response = self.call("management", method, path, timeout=MANAGEMENT_TIMEOUT_S, params=query)
        if response.status_code >= 400:
            raise TorchServeError(
                f"TorchServe answered {method} {path} with HTTP {response.status_code}: "
                f"{error_message(response)}",
                response.status_code,
            )
        return response.json()

    def _model_path(self, version: str | None = None) -> str:
        return f"/models/{self.model}" + (f"/{version}" if version else "")

    def list_models(self) -> dict[str, Any]:
        return self.manage("GET", "/models")

    def describe(self, version: str | None = None) -> list[dict[str, Any]]:
        """Every version (or one) with its settings and workers."""
        return self.manage("GET", self._model_path(version or "all"))

    def register(
        self,
        archive: str,
        workers: int | None = None,
        batch_size: int | None = None,
        max_batch_delay_ms: int | None = None,
    ) -> dict[str, Any]:
        """Load ``archive`` (a .mar file name in the model store) as a version of the model, with
        ``workers`` (None: TorchServe's ``default_workers_per_model``). TorchServe 0.12 starts
        the archive's minWorkers instead when its model-config.yaml names some
        (petseg.serving.reconcile scales afterwards); batch settings given here replace the
        archive's."""
        return self.manage(
            "POST",
            "/models",
            url=archive,
            model_name=self.model,
            initial_workers=workers,
            batch_size=batch_size,
            max_batch_delay=max_batch_delay_ms,
            synchronous="true",
        )

    def scale(self, workers: int, version: str | None = None) -> dict[str, Any]:
        """Waits for the new workers; not for 0 (TorchServe 0.12 stops them all but answers
        that synchronous call with a 500)."""
        return self.manage(
            "PUT",
            self._model_path(version),
            min_worker=workers,
            max_worker=max(workers, 1),
            synchronous="true" if workers else "false",
        )

    def set_default(self, version: str) -> dict[str, Any]:
        return self.manage("PUT", self._model_path(version) + "/set-default")

    def unregister(self, version: str | None = None) -> dict[str, Any]:
        return self.manage("DELETE", self._model_path(version))

    def workers(self, version: str | None = None) -> list[dict[str, Any]]:
        """The workers of the default version (or one), as the management API lists them."""
        return [
            w for entry in self.manage("GET", self._model_path(version)) for w in entry["workers"]
        ]

    def versions(self) -> list[str]:
        return [entry["modelVersion"] for entry in self.describe()]

    def default_version(self) -> str:
        return self.manage("GET", self._model_path())[0]["modelVersion"]

    def model_card(self, version: str | None = None) -> dict[str, Any]:
        """What the handler says about a version (its ``describe_handle``), through
        TorchServe's customized describe; {} for a handler that says nothing."""
        entry = self.manage("GET", self._model_path(version), customized="true")[0]
        card = entry.get("customizedMetadata") or {}
        return json.loads(card) if isinstance(card, str) else card

    # -- health --------------------------------------------------------------------------------
    def health(self) -> Health:
        """Never raises: a TorchServe that is down or lacks the model is a state to report."""
        report = ServingReport.read(self.keys.path.parent)
        try:
            response = self.call("management", "GET", self._model_path(), timeout=HEALTH_TIMEOUT_S)
        except (Unreachable, KeyFileError) as exc:
            return Health(False, 0, 0, exc.message)
        except TorchServeError as exc:
            return Health(True, 0, 0, exc.message, report)
        if response.status_code != 200:
            detail = f"model {self.model!r}: HTTP {response.status_code}"
            return Health(True, 0, 0, detail, report)
        workers = [w for entry in response.json() for w in entry.get("workers", [])]
        ready = sum(w.get("status") == "READY" for w in workers)
        if report is None:
            detail = "serving state not applied yet"
        else:
            detail = "ready" if ready else "no ready worker"
        return Health(True, ready, len(workers), detail, report)


def error_message(response: Reply) -> str:
    """TorchServe's error message (its JSON ``message``) or the start of the body."""
    try:
        return str(response.json().get("message", response.text))
    except ValueError:
        return response.text[:200] or response.reason
