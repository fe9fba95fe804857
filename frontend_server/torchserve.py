"""The proxy's only way to TorchServe: inference with a token that renews itself, and health.

TorchServe's keys expire (60 minutes by default). On an InvalidKeyException the client re-reads
the key file (someone may have rotated it) and, if the key there is the one that just failed,
asks TorchServe's token API for a new one with the API key; then it retries once.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import requests

USER_AGENT = "petseg-frontend"
"""Sent with every call to TorchServe, so its access log tells the proxy's requests apart."""


class TorchServeError(Exception):
    """TorchServe could not give an answer; ``status`` is what the proxy should reply."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str


class TokenStore:
    """The inference key from TorchServe's key file, renewed on demand."""

    def __init__(self, key_file: Path, management_url: str, timeout: float) -> None:
        self.key_file = Path(key_file)
        self.management_url = management_url
        self.timeout = timeout
        self._lock = threading.Lock()

    def _keys(self) -> dict[str, str]:
        try:
            data = json.loads(self.key_file.read_text())
            return {name: entry["key"] for name, entry in data.items()}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise TorchServeError(
                503,
                f"TorchServe's key file {self.key_file} is not readable; is TorchServe running?",
            ) from exc

    def key(self, kind: str = "inference") -> str:
        return self._keys()[kind]

    def renew(self, failed: str) -> str:
        """A key other than ``failed``: from the file if it changed, else from the token API."""
        with self._lock:
            current = self.key()
            if current != failed:
                return current
            url = f"{self.management_url}/token?type=inference"
            try:
                headers = {"Authorization": f"Bearer {self.key('API')}"}
                requests.get(url, headers=headers, timeout=self.timeout).raise_for_status()
            except requests.RequestException as exc:
                raise TorchServeError(503, f"could not renew TorchServe's token: {exc}") from exc
            return self.key()


class TorchServeClient:
    def __init__(self, inference_url: str, management_url: str, model: str, tokens: TokenStore,
                 timeout: float) -> None:  # fmt: skip
        self.inference_url = inference_url.rstrip("/")
        self.management_url = management_url.rstrip("/")
        self.model = model
        self.tokens = tokens
        self.timeout = timeout
        self._local = threading.local()

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TorchServeClient:
        tokens = TokenStore(Path(config["KEY_FILE"]), config["TORCHSERVE_MANAGEMENT_URL"],
                            config["TIMEOUT_S"])  # fmt: skip
        return cls(config["TORCHSERVE_INFERENCE_URL"], config["TORCHSERVE_MANAGEMENT_URL"],
                   config["MODEL_NAME"], tokens, config["TIMEOUT_S"])  # fmt: skip

    @property
    def session(self) -> requests.Session:
        """One connection pool per server thread (requests.Session is not thread-safe)."""
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
            self._local.session.headers["User-Agent"] = USER_AGENT
        return self._local.session

    def _post(self, stream: IO[bytes], content_type: str, accept: str, key: str):
        stream.seek(0)
        headers = {"Authorization": f"Bearer {key}", "Accept": accept,
                   # TorchServe answers 500 to bytes labelled form-urlencoded: never send that.
                   "Content-Type": content_type if content_type.startswith("image/")
                   else "application/octet-stream"}  # fmt: skip
        url = f"{self.inference_url}/predictions/{self.model}"
        try:
            return self.session.post(url, data=stream, headers=headers, timeout=self.timeout)
        except requests.Timeout as exc:
            raise TorchServeError(
                504, f"TorchServe did not answer within {self.timeout:g} s"
            ) from exc
        except requests.ConnectionError as exc:
            raise TorchServeError(
                503, f"TorchServe is not reachable at {self.inference_url}"
            ) from exc

    def segment(self, stream: IO[bytes], content_type: str, accept: str) -> Answer:
        """Forward one upload (streamed from ``stream``, not copied) and return the answer."""
        key = self.tokens.key()
        response = self._post(stream, content_type, accept, key)
        if response.status_code == 400 and "InvalidKeyException" in response.text:
            response = self._post(stream, content_type, accept, self.tokens.renew(key))
        return self._answer(response)

    def _answer(self, response: requests.Response) -> Answer:
        kind = response.headers.get("content-type", "application/json")
        if response.status_code < 500 and response.status_code != 404:
            if response.status_code == 400 and "InvalidKeyException" in response.text:
                raise TorchServeError(503, "TorchServe refused the renewed token")
            return Answer(response.status_code, response.content, kind)
        if response.status_code == 404:
            raise TorchServeError(503, f"model {self.model!r} is not registered in TorchServe")
        if response.status_code in (500, 503, 507):
            # 503: queue full or no ready worker; 507 (seen) or 500: the worker died mid-batch
            # and TorchServe restarts it. All pass: the client should retry.
            raise TorchServeError(503, f"model {self.model!r} is overloaded, restarting or has "
                                  "no ready worker; retry in a moment")  # fmt: skip
        raise TorchServeError(502, f"TorchServe failed with HTTP {response.status_code}")

    def health(self) -> dict[str, Any]:
        """Whether TorchServe answers and how many workers of the model are ready."""
        url = f"{self.management_url}/models/{self.model}"
        try:
            headers = {"Authorization": f"Bearer {self.tokens.key('management')}"}
            response = self.session.get(url, headers=headers, timeout=5)
        except TorchServeError as exc:
            return {"torchserve": "down", "ready_workers": 0, "detail": exc.message}
        except requests.RequestException:
            return {"torchserve": "down", "ready_workers": 0,
                    "detail": f"TorchServe is not reachable at {self.management_url}"}  # fmt: skip
        if response.status_code != 200:
            return {"torchserve": "up", "ready_workers": 0,
                    "detail": f"model {self.model!r}: HTTP {response.status_code}"}  # fmt: skip
        workers = [w for entry in response.json() for w in entry.get("workers", [])]
        ready = sum(w.get("status") == "READY" for w in workers)
        return {"torchserve": "up", "ready_workers": ready, "workers": len(workers),
                "detail": "ready" if ready else "no ready worker"}  # fmt: skip
