"""A task's photo, fetched from the one Label Studio petseg was configured with, and only there.

A task names its photo by URL (``/data/upload/3/1a2b-cat.jpg``, or absolute). Whoever can create
tasks chooses that URL, so a backend that fetched any URL would let them reach every host the
backend can (the server-side request forgery of TorchServe's CVE-2023-43654). Here a URL is
resolved against the configured Label Studio and refused unless it stays on its scheme, host
and port; a redirect is never followed (it could lead anywhere); the API token goes to that
origin only; and a body over the upload limit is cut off, not read.

Label Studio has two kinds of API token: a personal access token (a JWT refresh token, the
default since 1.18), exchanged at /api/token/refresh/ for an access token that lives minutes and
is sent as ``Bearer``; and a legacy token, sent as ``Token`` (only where an administrator enabled
legacy tokens for the organization). The kind is told from the token itself, as Label Studio's
SDK does.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

USER_AGENT = "petseg-label-studio"
REFRESH_PATH = "/api/token/refresh/"
EARLY_S = 30.0
"""An access token is renewed this long before it expires: a fetch never carries a stale one."""


class TaskError(ValueError):
    """A task petseg cannot pre-annotate, said so that Label Studio's user can fix it."""


@dataclass
class LabelStudio:
    url: str
    """Where Label Studio answers, e.g. http://127.0.0.1:8080."""
    token: str
    """An API token of a Label Studio user that may read the project's tasks."""
    max_bytes: int
    timeout_s: float = 30.0
    _access: str = field(default="", init=False, repr=False)
    """The access token got for a personal access token, shared by the backend's threads."""
    _access_ends: float = field(default=0.0, init=False, repr=False)
    _renewing: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the Label Studio URL {self.url!r} is not an http(s) URL")

    def authorization(self) -> str:
        """The Authorization header for Label Studio: ``Bearer`` with an access token got for
        a personal access token (renewed as it nears its end), or ``Token`` with a legacy one."""
        if _claims(self.token).get("token_type") != "refresh":
            return f"Token {self.token}"
        with self._renewing:
            if self._access_ends - EARLY_S < time.time():
                refresh = json.dumps({"refresh": self.token}).encode()
                status, body = self._request("POST", REFRESH_PATH, refresh, authorized=False)
                if status != 200:
                    raise TaskError(
                        f"Label Studio refused the API token (HTTP {status} from {REFRESH_PATH}): "
                        "set LABEL_STUDIO_API_KEY to a personal access token of its user"
                    )
                self._access = json.loads(body)["access"]
                self._access_ends = float(_claims(self._access).get("exp", 0))
            return f"Bearer {self._access}"

    def resolve(self, reference: object) -> str:
        """The absolute URL of a task's photo reference, or TaskError when it leaves Label
        Studio (another host, port or scheme, or credentials in the URL)."""
        if not isinstance(reference, str) or not reference.strip():
            raise TaskError("the task has no image URL")
        url = urljoin(self.url.rstrip("/") + "/", reference.strip())
        base, target = urlsplit(self.url), urlsplit(url)
        same = (target.scheme, target.hostname, target.port) == (
            base.scheme,
            base.hostname,
            base.port,
        )
        if not same or target.username is not None or target.password is not None:
            raise TaskError(
                f"its image {reference!r} is not on the configured Label Studio "
                f"({self.url}): petseg fetches images from there only"
            )
        return url

    def image(self, reference: object) -> bytes:
        """The photo's bytes, or TaskError saying what Label Studio answered."""
        url = self.resolve(reference)
        parts = urlsplit(url)
        status, data = self._request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
        if status == 401:
            raise TaskError(f"Label Studio refused the API token for {url} (HTTP 401)")
        if status != 200:
            raise TaskError(f"Label Studio answered HTTP {status} for {url}")
        if len(data) > self.max_bytes:
            raise TaskError(f"its image is over the {self.max_bytes // 2**20} MB upload limit")
        if not data:
            raise TaskError(f"its image at {url} is empty")
        return data

    def _request(
        self, method: str, path: str, body: bytes | None = None, authorized: bool = True
    ) -> tuple[int, bytes]:
        """One request to the configured Label Studio (a JSON ``body``; ``authorized``: with
        the token): its status and at most max_bytes + 1 of its body; a redirect is a
        TaskError, never followed."""
        parts = urlsplit(self.url)
        kind = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        connection = kind(parts.hostname, parts.port, timeout=self.timeout_s)
        headers = {"User-Agent": USER_AGENT}
        if authorized:
            headers["Authorization"] = self.authorization()
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            connection.request(method, path or "/", body=body, headers=headers)
            response = connection.getresponse()
            if 300 <= response.status < 400:
                where = response.getheader("Location", "?")
                raise TaskError(f"Label Studio redirected {path} to {where}: not followed")
            return response.status, response.read(self.max_bytes + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise TaskError(f"cannot reach Label Studio at {self.url}: {exc}") from exc
        finally:
            connection.close()


def _claims(token: str) -> dict:
    """A JWT's claims, unverified (Label Studio verifies them); {} for anything else."""
    pieces = token.split(".")
    if len(pieces) != 3:
        return {}
    try:
        claims = json.loads(base64.urlsafe_b64decode(pieces[1] + "=" * (-len(pieces[1]) % 4)))
    except (binascii.Error, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}
