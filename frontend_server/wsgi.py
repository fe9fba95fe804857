"""The WSGI server for the app: waitress, with the limits an untrusted network needs.

Plain waitress lost a "slow loris" fight (about 1,000 connections sending a few bytes a
second): with select() it crashed once a descriptor passed 1023; at its connection limit it
stopped accepting, so new clients hung in the kernel's queue for as long as the slow ones
chose to stay (they stay: waitress only drops connections that are idle, and a byte a second is
not idle); and each slow upload could spool up to the body cap to disk. This server:

- waits with poll(), which has no descriptor ceiling;
- gives every request a deadline: its headers within ``HEADER_TIMEOUT_S``, its body at
  ``MIN_BODY_RATE`` on average after a grace of ``BODY_GRACE_S``; a request that misses it is
  answered 408 and its connection closed, so slow clients hold a slot for seconds, not forever;
- past ``connection_limit`` open connections, answers every new one 503 at once (and closes
  it) instead of leaving it queued;
- counts the body bytes it holds for all requests together (memory and temporary files): past
  its budget (``SPOOL_BUDGET_UPLOADS``) the request that brings more gets a 503.
- sends an answer's header with its body, never alone (``HELD_ANSWER_BYTES``), so a balancer
  can retry an answer an instance died giving.

What it answers before the app runs (the 408 and 503 above, a malformed request, headers or a
body over their caps) is JSON like the app's errors, with the same security headers
(frontend_server.security). Beside the public listener it runs the operators' one (/metrics,
/status; see frontend_server.operator) when the app's ``METRICS_ADDRESS`` names one.

What the subclasses below take from waitress beyond its settings (the parser's, channel's,
task's and server's methods and attributes) is checked against the pinned version by
tests/unit/test_wsgi.py.
"""

from __future__ import annotations

import contextlib
import json
import logging
import resource
import socket
import sys
import threading
import time

from flask import Flask
from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import ClientDisconnected, HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask
from waitress.utilities import Error

from frontend_server import security
from frontend_server.errors import RETRY_AFTER_S
from frontend_server.operator import operator_server

logger = logging.getLogger(__name__)

CONNECTION_LIMIT = 2000
"""Open connections at most (fewer when the descriptor limit is low, see ``connection_limit``).
waitress's default of 100 was exhausted by 16 clients opening a connection per request
(tests/system/test_reliability.py). More connections make a slow-loris flood costlier. Each
costs at most ``MAX_HEADER_BYTES`` + ``INBUF_OVERFLOW`` of memory (2,000 such took the RSS from
40 to 136 MB) and up to ``FDS_PER_CONNECTION`` descriptors; poll()'s bookkeeping per loop grows with
them, yet uploads beside 2,000 open connections took 50 ms as in quiet (docs/guarantees.md,
measured by tests/system/test_slow_clients.py)."""
FDS_PER_CONNECTION = 3
"""The socket, the temporary file of a spooled body, that of a large buffered answer."""
RESERVED_FDS = 64
"""Descriptors kept for everything else: the listener, logs, connections to TorchServe."""
HEADER_TIMEOUT_S = 10
"""From a request's first byte to the end of its headers (a browser needs milliseconds)."""
BODY_GRACE_S = 10.0
MIN_BODY_RATE = 8 * 1024
"""Bytes a second, on average over the body, after ``BODY_GRACE_S``: 64 kbit/s, slower than
any uplink people upload photos from; a 5 MB photo may take ten minutes."""
IDLE_TIMEOUT_S = 10
"""A connection with no request under way (kept alive, or opened and silent) is closed after
this: browsers open a new one when they need it."""
SPOOL_BUDGET_UPLOADS = 8
"""The budget for the body bytes of all requests held at once, in bodies of the largest size
allowed: 8 (321 MiB with the 20 MB upload limit), a hundred 3 MB photos."""
INBUF_OVERFLOW = 16 * 1024
"""Body bytes a request keeps in memory before waitress moves its body to a temporary file
(waitress's default is 512 KiB: 1,000 slow uploads could hold 500 MB of memory)."""
MAX_HEADER_BYTES = 16 * 1024
"""Browsers send 1-8 KiB; waitress's default (256 KiB) let each slow connection hold more."""
CLEANUP_INTERVAL_S = 1
"""How often deadlines and idle connections are checked (waitress's default: 30 s)."""
HELD_ANSWER_BYTES = 1024 * 1024
"""Answer bytes a connection holds before it sends any (waitress's ``send_bytes``). waitress's
default, 1, sends the header alone as soon as it is built: an instance killed before the body
followed left the balancer a header it had passed on, so it could not try another instance,
and the client got a broken answer (one upload in 400, tests/system/test_cluster.py). Held, the
header leaves with the body, in one send up to the socket's buffer (16 KiB here: the answers to
small photos): the balancer gets the whole answer or nothing, and retries nothing elsewhere.
waitress 3 deprecates the setting as an argument, so ``Server`` sets it on its adjustments."""


def connection_limit() -> int:
    """``CONNECTION_LIMIT``, or fewer when the soft ``ulimit -n`` could not hold that many
    connections: out of descriptors, accept() fails and waitress retries it in a busy loop."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return CONNECTION_LIMIT
    return max(1, min(CONNECTION_LIMIT, (soft - RESERVED_FDS) // FDS_PER_CONNECTION))


def raise_fd_limit() -> None:
    """Raise the soft ``ulimit -n`` (often 1024) towards the hard one, as far as
    ``CONNECTION_LIMIT`` needs: a process may, and TorchServe started after it inherits it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = CONNECTION_LIMIT * FDS_PER_CONNECTION + RESERVED_FDS
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def answer(code: int, reason: str, message: str) -> tuple[str, list[tuple[str, str]], bytes]:
    """The status, headers and body of an answer the server gives before the app runs: JSON
    like the app's own errors, so the page shows the message, with the app's security headers."""
    body = json.dumps({"code": code, "message": message}).encode()
    headers = [("Content-Type", "application/json"), ("Connection", "close")]
    headers += security.HEADERS.items()
    if code == 503:
        headers.append(("Retry-After", str(RETRY_AFTER_S)))
    return f"{code} {reason}", headers, body


def raw_answer(code: int, reason: str, message: str) -> bytes:
    """``answer`` as bytes on the wire, for the places where no waitress task writes it."""
    status, headers, body = answer(code, reason, message)
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers)]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


BUSY = raw_answer(503, "Service Unavailable", "too many connections; retry in a moment")
TOO_SLOW = raw_answer(408, "Request Timeout", "the request arrived too slowly")


class SpoolFull(Error):
    """A request body that would take the server past its spool budget."""

    code = 503
    reason = "Service Unavailable"


class Refusal(ErrorTask):
    """What waitress answers to a request it refuses before the app runs (a malformed request,
    headers or a body over their caps, ``SpoolFull``, a failure of the server itself): its
    status and message as JSON, like the app's own errors, where waitress writes plain text."""

    def execute(self) -> None:
        error = self.request.error
        self.status, headers, body = answer(error.code, error.reason, error.body)
        self.response_headers.extend(headers)
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class SpoolBudget:
    """Body bytes held for all requests together, in memory or temporary files."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()  # released by waitress's worker threads too

    def take(self, size: int) -> bool:
        """Count ``size`` more bytes (they are stored already); False when over the limit."""
        with self._lock:
            self.used += size
            return self.used <= self.limit

    def give_back(self, size: int) -> None:
        with self._lock:
            self.used -= size


class Request(HTTPRequestParser):
    """waitress's request parser, with a deadline and its body bytes counted in the budget."""

    def __init__(self, adj: Adjustments, budget: SpoolBudget) -> None:
        super().__init__(adj)
        self.budget = budget
        self.started = time.monotonic()
        self.body_started: float | None = None
        self.held = 0

    def received(self, data: bytes) -> int:
        before = self.body_bytes_received
        consumed = super().received(data)
        if self.headers_finished and self.body_started is None:
            self.body_started = time.monotonic()
        grown = self.body_bytes_received - before
        if grown:
            self.held += grown
            if not self.budget.take(grown) and not self.completed:
                self.error = SpoolFull("the server holds too many uploads; retry in a moment")
                self.completed = True
        return consumed

    def expired(self, now: float) -> bool:
        """Headers later than ``HEADER_TIMEOUT_S``, or a body slower than the minimum rate."""
        if self.body_started is None:
            return now - self.started > HEADER_TIMEOUT_S
        allowed = BODY_GRACE_S + self.body_bytes_received / MIN_BODY_RATE
        return now - self.body_started > allowed

    def close(self) -> None:
        super().close()
        self.budget.give_back(self.held)
        self.held = 0


class Channel(HTTPChannel):
    """A connection whose requests are ``Request``s, refused as ``Refusal``s; it frees the one
    under way when closed (waitress leaves that to the garbage collector: its temporary file,
    and its budget)."""

    server: Server
    error_task_class = Refusal

    def parser_class(self, adj: Adjustments) -> Request:  # waitress calls self.parser_class(adj)
        return Request(adj, self.server.spool)

    def time_out(self) -> None:
        """Answer 408 and close: the request under way missed its deadline."""
        with contextlib.suppress(ClientDisconnected):  # gone already: nothing to answer
            self.write_soon(TOO_SLOW)
        self.close_when_flushed = True

    def handle_close(self) -> None:
        # Not under requests_lock: waitress may close from inside received(), which holds it.
        if self.request is not None:
            self.request.close()
        super().handle_close()


class Server(TcpWSGIServer):
    """waitress's TCP server with the limits in the module's docstring."""

    channel_class = Channel

    def __init__(self, app: Flask, spool_budget: int, limit: int, **adjustments: object) -> None:
        self.spool = SpoolBudget(spool_budget)
        self.limit = limit
        self.overloaded = False
        # waitress's own connection_limit stops accepting, and new clients wait unanswered in
        # the kernel's queue: out of reach here, as handle_accept answers them 503 at ``limit``.
        super().__init__(app, connection_limit=sys.maxsize, **adjustments)
        self.adj.send_bytes = HELD_ANSWER_BYTES
        try:
            self.operator = operator_server(app)
        except Exception:
            super().close()  # e.g. the operators' port is taken: free the public one too
            raise

    def run(self) -> None:
        """Serve, with the operators' listener in a thread of its own."""
        if self.operator is not None:
            threading.Thread(target=self.operator.run, name="operator", daemon=True).start()
        super().run()

    def close(self) -> None:
        """The listeners and every connection still open: waitress's close() stops only the
        listening socket, and a client's idle kept-alive connection (a browser's) keeps the
        serve loop, and the thread that runs it, going."""
        for server in (self.operator, self):
            if server is not None:
                TcpWSGIServer.close(server)
                wasyncore.close_all(server._map)

    def handle_accept(self) -> None:
        full = len(self.active_channels) >= self.limit
        if full != self.overloaded:
            self.overloaded = full
            state = "answering new ones 503" if full else "accepting again"
            logger.warning("%d open connections: %s", len(self.active_channels), state)
        if not full:
            super().handle_accept()
            return
        try:
            accepted = self.accept()
        except OSError:  # as in waitress's handle_accept: a failed accept is no reason to stop
            return
        if accepted is not None:
            refuse(accepted[0])

    def maintenance(self, now: float) -> None:
        """waitress's (closes idle connections), then the deadlines of requests under way."""
        super().maintenance(now)
        clock = time.monotonic()
        for channel in self.active_channels.values():
            request = channel.request
            if not channel.requests and request is not None and request.expired(clock):
                channel.time_out()

    def handle_error(self) -> None:
        """An exception in the listener: waitress would log it, close the listening socket and
        go on serving the connections it has, never accepting again. Re-raise it instead, so
        the serve loop ends and whoever runs the server sees it (`petseg run` exits non-zero)."""
        raise  # wasyncore calls this inside its ``except`` block: the exception it caught


def refuse(sock: socket.socket) -> None:
    """Answer ``BUSY`` on a just-accepted connection and close it. What the client has sent
    already is read first: closing with unread data would reset the connection and could
    destroy the answer before the client reads it."""
    try:
        sock.setblocking(False)
        sock.recv(65536)
    except OSError:
        pass
    try:
        sock.send(BUSY)
    except OSError:
        pass
    finally:
        sock.close()


def make_server(app: Flask, host: str, port: int, threads: int = 16) -> Server:
    """A waitress server for ``app``; ``port`` 0 picks a free one (see ``effective_port``).

    waitress receives a whole request body (chunked ones too) before the app runs, in memory up
    to ``INBUF_OVERFLOW`` and then in a temporary file. Its cap per request is twice the app's
    own upload limit: bodies over the app's limit get the app's JSON 413, and beyond the cap
    the server answers 413 (JSON too, ``Refusal``) while the body is still arriving. All bodies
    together are held to ``SPOOL_BUDGET_UPLOADS`` caps.
    """
    body_cap = 2 * app.config["MAX_CONTENT_LENGTH"]
    return Server(
        app,
        spool_budget=SPOOL_BUDGET_UPLOADS * body_cap,
        limit=connection_limit(),
        host=host,
        port=port,
        threads=threads,
        max_request_body_size=body_cap,
        max_request_header_size=MAX_HEADER_BYTES,
        inbuf_overflow=INBUF_OVERFLOW,
        channel_timeout=IDLE_TIMEOUT_S,
        cleanup_interval=CLEANUP_INTERVAL_S,
        asyncore_use_poll=True,
    )
