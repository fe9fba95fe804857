"""Every HTTP request the suite sends with `requests`, counted by destination and outcome.

conftest wraps ``requests.Session.send`` (which every `requests` call goes through, the proxy's
own calls to TorchServe included) and prints the table at the end of the run.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from urllib.parse import urlsplit

import requests

from frontend_server.upstream import USER_AGENT

FORWARDED_BY = USER_AGENT
"""The User-Agent the proxy sends to TorchServe: tells forwarded requests from direct ones."""
COLUMNS = ("2xx", "3xx", "4xx", "5xx", "no answer")

_destinations: dict[int, str] = {}
_counts: Counter[tuple[str, str]] = Counter()
_lock = threading.Lock()


def name_port(port: int, destination: str) -> None:
    _destinations[port] = destination


def _destination(request: requests.PreparedRequest) -> str:
    name = _destinations.get(urlsplit(request.url).port or 80, "other")
    if name.startswith("TorchServe inference"):
        forwarded = str(request.headers.get("User-Agent", "")).startswith(FORWARDED_BY)
        name += " (via proxy)" if forwarded else " (direct)"
    return name


def record(send: Callable) -> Callable:
    """``send`` that also counts what it sent and what came back."""

    def counted(session, request, **kwargs):
        try:
            response = send(session, request, **kwargs)
        except requests.RequestException:
            outcome = "no answer"
            raise
        else:
            outcome = f"{response.status_code // 100}xx"
            return response
        finally:
            with _lock:
                _counts[_destination(request), outcome] += 1

    return counted


def table() -> list[str]:
    if not _counts:
        return []
    rows = sorted({destination for destination, _ in _counts})
    width = max(len(r) for r in [*rows, "total"])
    lines = [f"{'requests sent':<{width}} " + " ".join(f"{c:>9}" for c in [*COLUMNS, "total"])]
    for row in [*rows, "total"]:
        cells = [
            sum(n for (d, o), n in _counts.items() if o == c and row in (d, "total"))
            for c in COLUMNS
        ]
        lines.append(f"{row:<{width}} " + " ".join(f"{n:>9}" for n in [*cells, sum(cells)]))
    return lines
