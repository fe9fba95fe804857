"""Every HTTP request the suite sends, counted by destination and outcome.

conftest wraps ``requests.Session.send`` (which every `requests` call goes through) and the
TorchServe client's ``Connections.send`` (the proxy's calls to TorchServe, the `petseg`
command's, the tests' own) and prints the table at the end of the run; on several processes,
each counts its own and the run's controller sums them.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from urllib.parse import urlsplit

import requests

from frontend_server.upstream import USER_AGENT
from torchserve_client.transport import Connections

FORWARDED_BY = USER_AGENT
"""The User-Agent the proxy sends to TorchServe: tells forwarded requests from direct ones."""
COLUMNS = ("2xx", "3xx", "4xx", "5xx", "no answer")

_destinations: dict[int, str] = {}
_counts: Counter[tuple[str, str]] = Counter()
_lock = threading.Lock()


def name_port(port: int, destination: str) -> None:
    _destinations[port] = destination


def _destination(url: str, user_agent: str) -> str:
    name = _destinations.get(urlsplit(url).port or 80, "other")
    if name.startswith("TorchServe inference"):
        forwarded = user_agent.startswith(FORWARDED_BY)
        name += " (via proxy)" if forwarded else " (direct)"
    return name


def _counting(send: Callable, sent_to: Callable[..., tuple[str, str]]) -> Callable:
    """``send`` that also counts what it sent (``sent_to`` its arguments: the URL and the
    User-Agent) and what came back (an exception: no answer)."""

    def counted(*args, **kwargs):
        outcome = "no answer"
        try:
            response = send(*args, **kwargs)
            outcome = f"{response.status_code // 100}xx"
            return response
        finally:
            with _lock:
                _counts[_destination(*sent_to(*args, **kwargs)), outcome] += 1

    return counted


def record() -> None:
    """Count every request `requests` and the TorchServe client send from now on."""
    requests.Session.send = _counting(
        requests.Session.send,
        lambda session, request, **_: (request.url, request.headers.get("User-Agent", "")),
    )
    Connections.send = _counting(
        Connections.send,
        lambda connections, method, url, *_, **__: (url, connections.user_agent),
    )


def counted() -> list[tuple[str, str, int]]:
    """What this process counted: (destination, outcome, requests), for the run's controller
    when the suite runs on several processes (tests/conftest.py)."""
    with _lock:
        return [(destination, outcome, n) for (destination, outcome), n in _counts.items()]


def add(counts: list[tuple[str, str, int]]) -> None:
    """Another process's ``counted()`` into this one's table."""
    with _lock:
        for destination, outcome, n in counts:
            _counts[destination, outcome] += n


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
