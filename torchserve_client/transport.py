"""HTTP/1.1 to TorchServe on the standard library: one kept-alive connection per thread and
origin.

requests spent ~1.1 ms of CPU per upload where http.client spends ~0.3 (a 60 KB photo, a
40 KB answer): a third of the web proxy's own CPU per upload went to requests' hooks, header
merging and environment lookups. TorchServe is a service beside its clients, so none of that
is wanted: no proxies from the environment (HTTP_PROXY would send every photo through a
corporate proxy), no ~/.netrc (an entry there replaced requests' Authorization header), no
cookies, no redirects. HTTPS uses the system's CA store (``SSL_CERT_FILE`` names another).
"""

from __future__ import annotations

import http.client
import json
import os
import select
import socket
import threading
import weakref
from dataclasses import dataclass
from email.message import Message
from typing import IO, Any
from urllib.parse import urlsplit

from torchserve_client.errors import Unreachable

Body = bytes | IO[bytes] | None
"""A request body: bytes, or a seekable stream sent as it is read (not copied), from where it
stands, and left there: the same stream can be sent again."""
BLOCK_BYTES = 256 * 1024
"""How much of a streamed body goes to the socket per write (http.client's default: 8 KiB)."""


@dataclass(frozen=True)
class Reply:
    """TorchServe's answer, whole."""

    status_code: int
    reason: str
    headers: Message
    """Case-insensitive: ``headers.get("content-type")``."""
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not."""
        return json.loads(self.content)


def body_length(body: bytes | IO[bytes]) -> int:
    """Bytes left to send: a stream is measured from where it stands, not read."""
    if isinstance(body, bytes | bytearray | memoryview):
        return len(body)
    position = body.tell()
    end = body.seek(0, os.SEEK_END)
    body.seek(position)
    return end - position


def dropped(sock: socket.socket) -> bool:
    """Whether a kept-alive connection was closed (or sent something unasked) while idle."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class Pool:
    """One thread's connections, by scheme and host, closed with it: a socket left to the
    garbage collector stays open until then and warns (ResourceWarning).

    A weakref finalizer closes them, not ``__del__``: a pool that is garbage in a reference
    cycle (a discarded Flask app holds a client) is finalized with everything in the cycle in
    no set order, and a socket finalized before the pool's ``__del__`` has closed it warns in
    whatever code runs at that moment. The finalizer runs before any of them, and the
    connections it closes are its own arguments, not part of the garbage."""

    def __init__(self) -> None:
        self.connections: dict[tuple[str, str], http.client.HTTPConnection] = {}
        weakref.finalize(self, close_all, self.connections)

    def close(self) -> None:
        close_all(self.connections)


def close_all(connections: dict[tuple[str, str], http.client.HTTPConnection]) -> None:
    for connection in connections.values():
        connection.close()


class Connections:
    """This thread's connection to each origin (http.client connections are not thread-safe),
    reused for as long as the server keeps it open."""

    def __init__(self, user_agent: str) -> None:
        self.user_agent = user_agent
        self._local = threading.local()

    def close(self) -> None:
        """Close this thread's connections (the next request opens a new one)."""
        self._pool().close()

    def _pool(self) -> Pool:
        if not hasattr(self._local, "pool"):
            self._local.pool = Pool()
        return self._local.pool

    def _connection(self, scheme: str, netloc: str, timeout: float) -> http.client.HTTPConnection:
        pool = self._pool().connections
        connection = pool.get((scheme, netloc))
        if connection is None:
            kind = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
            connection = pool[scheme, netloc] = kind(netloc, timeout=timeout, blocksize=BLOCK_BYTES)
        elif connection.sock is not None and dropped(connection.sock):
            connection.close()
        connection.timeout = timeout
        if connection.sock is not None:
            connection.sock.settimeout(timeout)
        return connection

    def send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: Body,
        timeout: float,
        replayable: bool = False,
    ) -> Reply:
        """One request and its whole answer; any failure is an Unreachable (timed out or not),
        and leaves this thread's connection closed, never half-used.

        A kept-alive connection that turns out closed when used is replaced and the request sent
        again if it did not get through whole, or if it is
        ``replayable``: the server may have acted on a request it read and then dropped without
        an answer, which only a request without side effects (a prediction) may risk."""
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = {"User-Agent": self.user_agent, **headers}
        if body is not None:
            headers["Content-Length"] = str(body_length(body))
        start = body.tell() if hasattr(body, "tell") else None
        connection = self._connection(parts.scheme, parts.netloc, timeout)
        reused = connection.sock is not None

        def sent_once() -> Reply:
            try:
                return exchange(connection, method, target, headers, body)
            finally:
                if start is not None:
                    body.seek(start)  # where it stood: ready to be sent again

        try:
            try:
                return sent_once()
            except ConnectionError as exc:
                if not reused or not (replayable or isinstance(exc, Unsent)):
                    raise
                connection.close()
                return sent_once()
        except BaseException as exc:
            connection.close()
            if isinstance(exc, TimeoutError):
                message = f"TorchServe did not answer within {timeout:g} s"
                raise Unreachable(message, timed_out=True) from exc
            if isinstance(exc, OSError | http.client.HTTPException):
                origin = f"{parts.scheme}://{parts.netloc}"
                raise Unreachable(f"TorchServe is not reachable at {origin}") from exc
            raise


class Unsent(ConnectionError):
    """The connection broke before the request was sent whole, and no answer came: the server
    cannot have acted on it, so sending it again is safe."""


def exchange(
    connection: http.client.HTTPConnection,
    method: str,
    target: str,
    headers: dict[str, str],
    body: Body,
) -> Reply:
    try:
        connection.request(method, target, body=body, headers=headers)
    except ConnectionError as failed:
        if connection.sock is None:  # it never connected
            raise
        try:  # a server may answer before it has read the body (413) and close
            response = connection.getresponse()
        except (OSError, http.client.HTTPException):
            raise Unsent("the connection broke while sending") from failed
    else:
        response = connection.getresponse()
    with response:  # closes its socket if it owns it (the server said it would close)
        content = response.read()
    return Reply(response.status, response.reason, response.msg, content)
