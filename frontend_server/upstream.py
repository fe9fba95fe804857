"""The proxy's view of TorchServe: forward one upload, and turn whatever went wrong upstream
into the status and message a browser or API client should see."""

from __future__ import annotations

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


def segment(
    client: TorchServe,
    stream: IO[bytes],
    content_type: str,
    output: str,
    tolerance: str | None = None,
) -> Answer:
    """Forward one upload (streamed from ``stream``, not copied); TorchServe's answer, or its
    client errors (4xx) as they are, or an UpstreamError."""
    try:
        response = client.predict(stream, content_type, output, tolerance=tolerance)
    except Unreachable as exc:
        raise UpstreamError(504 if exc.timed_out else 503, exc.message) from exc
    except TorchServeError as exc:
        raise UpstreamError(503, exc.message) from exc
    return answer(response, client.model)


def answer(response: requests.Response, model: str) -> Answer:
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
