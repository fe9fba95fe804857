"""The proxy's view of TorchServe: forward one upload, and turn whatever went wrong upstream
into the status and message a browser or API client should see."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

import requests

from torchserve_client import TorchServe, TorchServeError, Unreachable

USER_AGENT = "petseg-frontend"
"""Sent with every call to TorchServe, so its access log tells the proxy's requests apart."""
RETRYABLE = (500, 503, 507)
"""503: queue full or no ready worker; 507 (seen) or 500: the worker died mid-batch and
TorchServe restarts it. All pass within seconds: the client should retry."""


class UpstreamError(Exception):
    """TorchServe could not give an answer; ``status`` is what the proxy replies."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str


def client_from_config(config: dict[str, Any]) -> TorchServe:
    return TorchServe(
        config["TORCHSERVE_INFERENCE_URL"],
        config["TORCHSERVE_MANAGEMENT_URL"],
        config["KEY_FILE"],
        model=config["MODEL_NAME"],
        timeout=config["TIMEOUT_S"],
        user_agent=USER_AGENT,
    )


@contextlib.contextmanager
def reporting(model: str) -> Iterator[None]:
    """Client failures as the UpstreamError the proxy replies with."""
    try:
        yield
    except Unreachable as exc:
        raise UpstreamError(504 if exc.timed_out else 503, exc.message) from exc
    except TorchServeError as exc:
        if exc.status == 404:
            raise UpstreamError(503, f"model {model!r} is not registered in TorchServe") from exc
        raise UpstreamError(503, exc.message) from exc


def segment(
    client: TorchServe,
    stream: IO[bytes],
    content_type: str,
    output: str,
    tolerance: str | None = None,
    version: str | None = None,
) -> Answer:
    """Forward one upload (streamed from ``stream``, not copied) to the default version or a
    ``version`` TorchServe holds; its answer, its client errors (4xx) as they are, or an
    UpstreamError."""
    with reporting(client.model):
        if version is not None:
            known_version(client, version)
        response = client.predict(stream, content_type, output, version, tolerance)
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


def answer(response: requests.Response, model: str) -> Answer:
    """TorchServe's answer to a prediction, or what the proxy says instead."""
    status = response.status_code
    if status == 404:
        raise UpstreamError(503, f"model {model!r} is not registered in TorchServe")
    if status in RETRYABLE:
        raise UpstreamError(
            503,
            f"model {model!r} is overloaded, restarting or has no ready worker; retry in a moment",
        )
    if status >= 500:
        raise UpstreamError(502, f"TorchServe failed with HTTP {status}")
    return Answer(
        status, response.content, response.headers.get("content-type", "application/json")
    )
