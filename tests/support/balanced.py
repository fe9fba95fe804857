"""Uploads through nginx as a browser sends them: sent again once when a reused kept-alive
connection closes before any answer. nginx's graceful reload (a roll, or the keeper replacing or
adding an instance) closes idle kept-alive connections, and a request may race that close;
RFC 9112 (9.3.1) lets a client retry then, browsers do, and inference is safe to send again.
Anything else (a timeout, an error answer) is the request's outcome."""

from __future__ import annotations

import time

import requests

RESENT: list[float] = []
"""When a client sent an upload again because its kept-alive connection closed first."""
LOST: list[str] = []
"""Why each upload that got no answer got none (the exception), for a failing test's message."""


def post_photo(
    session: requests.Session, url: str, photo: bytes, timeout: float = 60
) -> requests.Response | None:
    """``photo`` to ``url``/api/segment; None when no answer came."""
    for attempt in range(2):
        try:
            return session.post(
                f"{url}/api/segment", files={"file": ("a.jpg", photo)}, timeout=timeout
            )
        except requests.ConnectionError as error:
            if attempt:
                LOST.append(f"{type(error).__name__}: {error}")
                return None
            RESENT.append(time.time())
        except requests.RequestException as error:
            LOST.append(f"{type(error).__name__}: {error}")
            return None
    return None
