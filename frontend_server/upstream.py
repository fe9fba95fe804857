"""The proxy's view of TorchServe: forward one upload, and turn whatever went wrong upstream
into the status and message a browser or API client should see."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import IO, Any

from handler.protocol import MODEL_VERSION_HEADER
from torchserve_client import Reply, TorchServe, TorchServeError, Unreachable

USER_AGENT = "petseg-frontend"
"""Sent with every call to TorchServe, so its access log tells the proxy's requests apart."""
RETRYABLE = (500, 503, 507)
"""503: queue full or no ready worker; 507 (seen) or 500: the worker died mid-batch and
TorchServe restarts it. All pass within seconds: the client should retry."""
TORCHSERVE_REQUEST_ID = "x-request-id"
"""TorchServe 0.12 answers every request with its own id (a UUID) in this header."""

OVERLOADED = "overloaded"
"""TorchServe's 503: the model's queue is full or it has no ready worker."""
WORKER_FAILED = "worker_failed"
"""TorchServe's 500 or 507: the worker died mid-batch (TorchServe restarts it)."""
TIMEOUT = "timeout"
TORCHSERVE_DOWN = "torchserve_down"
"""Not reachable, no key file, or the model not registered."""
UPSTREAM_ERROR = "upstream_error"
"""Any other 5xx from TorchServe."""
CAUSES = (OVERLOADED, WORKER_FAILED, TIMEOUT, TORCHSERVE_DOWN, UPSTREAM_ERROR)
"""Why TorchServe gave no answer: the proxy's metrics count uploads by these."""


class UpstreamError(Exception):
    """TorchServe could not give an answer; ``status`` is what the proxy replies, ``cause``
    one of ``CAUSES`` (or None for the proxy's own 404 of an unknown version)."""

    def __init__(self, status: int, message: str, cause: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.cause = cause


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str
    model_version: str | None = None
    """The version that answered, as the handler reports it."""
    torchserve_id: str | None = None
    """TorchServe's own id for the request (its handler logs it beside ours)."""


def client_from_config(
    config: dict[str, Any], on_renewal: Callable[[str], None] | None = None
) -> TorchServe:
    return TorchServe(
        config["TORCHSERVE_INFERENCE_URL"],
        config["TORCHSERVE_MANAGEMENT_URL"],
        config["KEY_FILE"],
        model=config["MODEL_NAME"],
        timeout=config["TIMEOUT_S"],
        user_agent=USER_AGENT,
        on_renewal=on_renewal,
    )


@contextlib.contextmanager
def reporting(model: str) -> Iterator[None]:
    """Client failures as the UpstreamError the proxy replies with."""
    try:
        yield
    except Unreachable as exc:
        if exc.timed_out:
            raise UpstreamError(504, exc.message, TIMEOUT) from exc
        raise UpstreamError(503, exc.message, TORCHSERVE_DOWN) from exc
    except TorchServeError as exc:
        message = exc.message
        if exc.status == 404:
            message = f"model {model!r} is not registered in TorchServe"
        raise UpstreamError(503, message, TORCHSERVE_DOWN) from exc


def segment(
    client: TorchServe,
    stream: IO[bytes],
    content_type: str,
    output: str,
    tolerance: float | None = None,
    version: str | None = None,
    request_id: str | None = None,
    timer: Callable[[], AbstractContextManager] = contextlib.nullcontext,
    declared_version: bool = False,
) -> Answer:
    """Forward one upload (streamed from ``stream``, not copied) to the default version or a
    ``version`` TorchServe holds; its answer, its client errors (4xx) as they are, or an
    UpstreamError. ``timer()`` wraps the prediction call alone (the proxy's metrics).
    ``declared_version``: the version comes from the serving state (a rollout's), not from
    the client, and is sent on without asking TorchServe for its versions first."""
    with reporting(client.model):
        if version is not None and not declared_version:
            known_version(client, version)
        with timer():
            response = client.predict(stream, content_type, output, version, tolerance, request_id)
    return answer(response, client.model)


def known_version(client: TorchServe, version: str) -> None:
    """Only versions TorchServe reports for the model reach its versioned URL."""
    versions = client.versions()
    if version not in versions:
        raise UpstreamError(
            404, f"model {client.model!r} has no version {version!r}; it has {', '.join(versions)}"
        )


def model_info(client: TorchServe, version: str | None = None) -> dict[str, Any]:
    """The model card of a version (the default one unless named) and the versions there are."""
    with reporting(client.model):
        if version is not None:
            known_version(client, version)
        card = client.model_card(version)
        return {**card, "default_version": client.default_version(), "versions": client.versions()}


def answer(response: Reply, model: str) -> Answer:
    """TorchServe's answer to a prediction, or what the proxy says instead."""
    status = response.status_code
    if status == 404:
        raise UpstreamError(
            503, f"model {model!r} is not registered in TorchServe", TORCHSERVE_DOWN
        )
    if status in RETRYABLE:
        raise UpstreamError(
            503,
            f"model {model!r} is overloaded, restarting or has no ready worker; retry in a moment",
            OVERLOADED if status == 503 else WORKER_FAILED,
        )
    if status >= 500:
        raise UpstreamError(502, f"TorchServe failed with HTTP {status}", UPSTREAM_ERROR)
    headers = response.headers
    return Answer(
        status,
        response.content,
        headers.get("content-type", "application/json"),
        headers.get(MODEL_VERSION_HEADER),
        headers.get(TORCHSERVE_REQUEST_ID),
    )
