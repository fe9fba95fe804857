"""The web server (frontend_server/wsgi.py) under the app: what it answers before the app runs,
and the waitress internals its subclasses build on, held to the pinned version."""

from __future__ import annotations

import http.client
import inspect
import json
import re
import socket
import threading
from importlib.metadata import version
from pathlib import Path

import pytest
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask
from waitress.utilities import Error

from frontend_server import create_app, wsgi
from tests.support.web import SECURITY_HEADERS, offline_config, serving

REQUIREMENTS = Path(__file__).resolve().parents[2] / "frontend_server" / "requirements.txt"
PINNED = re.search(r"^waitress==(\S+)$", REQUIREMENTS.read_text(), re.M).group(1)
RECHECK = (
    f"frontend_server/wsgi.py subclasses waitress {PINNED} (pinned in "
    "frontend_server/requirements.txt) and builds on the internals below. Before moving the "
    "pin, read the new version's parser.py, channel.py, task.py and server.py for each of them "
    "(the request deadline, the spool budget, the 503 past the connection limit, the JSON "
    "refusals, the 408), adapt the subclasses, and run tests/system/test_slow_clients.py:\n"
)
SIGNATURES = {
    (HTTPRequestParser, "__init__"): "(self, adj)",
    (HTTPRequestParser, "received"): "(self, data)",
    (HTTPRequestParser, "close"): "(self)",
    (HTTPChannel, "__init__"): "(self, server, sock, addr, adj, map=None)",
    (HTTPChannel, "write_soon"): "(self, data)",
    (HTTPChannel, "handle_close"): "(self)",
    (ErrorTask, "execute"): "(self)",
    (ErrorTask, "set_close_on_finish"): "(self)",
    (ErrorTask, "write"): "(self, data)",
    (TcpWSGIServer, "__init__"): (
        "(self, application, map=None, _start=True, _sock=None, dispatcher=None, adj=None, "
        "sockinfo=None, bind_socket=True, **kw)"
    ),
    (TcpWSGIServer, "accept"): "(self)",
    (TcpWSGIServer, "handle_accept"): "(self)",
    (TcpWSGIServer, "maintenance"): "(self, now)",
    (TcpWSGIServer, "handle_error"): "(self)",
    (TcpWSGIServer, "run"): "(self)",
    (TcpWSGIServer, "close"): "(self)",
}
"""The methods the subclasses override or call, with their signatures in the pinned version."""
ATTRIBUTES = {
    HTTPRequestParser: ("completed", "headers_finished", "body_bytes_received", "error"),
    Adjustments: ("send_bytes",),
    HTTPChannel: ("parser_class", "error_task_class", "request", "close_when_flushed"),
    ErrorTask: ("status", "content_length"),
    TcpWSGIServer: ("channel_class",),
    Error: ("code", "reason"),
}
"""The class attributes they read or set."""


def test_the_installed_waitress_is_the_pinned_one():
    assert version("waitress") == PINNED, RECHECK + f"installed: waitress {version('waitress')}"


def test_the_waitress_internals_the_subclasses_build_on_are_there(tmp_path):
    changed = []
    for (cls, name), expected in SIGNATURES.items():
        method = getattr(cls, name, None)
        found = "missing" if method is None else str(inspect.signature(method)).split(" ->")[0]
        if found != expected:
            changed.append(f"{cls.__name__}.{name}{expected}: now {found}")
    for cls, names in ATTRIBUTES.items():
        changed += [f"{cls.__name__}.{name}: missing" for name in names if not hasattr(cls, name)]
    server = wsgi.make_server(create_app(offline_config(tmp_path)), "127.0.0.1", 0, threads=1)
    ours, theirs = socket.socketpair()
    try:
        channel = wsgi.Channel(server, ours, ("127.0.0.1", 1), server.adj, map={})
        channel.received(b"GET / HTTP/1.1\r\n")
        if not isinstance(channel.request, wsgi.Request):
            changed.append("HTTPChannel.received: no longer builds self.parser_class(adj)")
        if server.active_channels.get(ours.fileno()) is not channel or channel.requests != []:
            changed.append("HTTPChannel: no longer in server.active_channels, or no .requests")
        channel.handle_close()
    finally:
        theirs.close()
        server.close()
    assert not changed, RECHECK + "\n".join(changed)


def reply_to(url: str, sent: bytes) -> tuple[str, dict[str, str], bytes]:
    """The status, headers and body the server at ``url`` answers ``sent`` with, on a second
    connection (the first, silent, holds a slot: all of them when the limit is 1)."""
    host, port = url.removeprefix("http://").split(":")
    address = (host, int(port))
    with socket.create_connection(address, 10), socket.create_connection(address, 10) as tested:
        tested.sendall(sent)
        reply = b"".join(iter(lambda: tested.recv(65536), b""))
    head, _, body = reply.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    return status.split(" ")[1], dict(line.split(": ", 1) for line in lines), body


@pytest.mark.parametrize(
    ("limits", "sent", "status"),
    [
        ({}, b"POST /api/segment HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000000\r\n\r\n", 413),
        ({}, b"GET /api/health HTTP/1.1\r\nHost: a\r\nno colon in this header\r\n\r\n", 400),
        ({"HEADER_TIMEOUT_S": 0}, b"GET /api/health HTTP/1.1\r\nHost: a\r\n", 408),
        ({"CONNECTION_LIMIT": 1}, b"", 503),
    ],
    ids=["body-over-the-servers-cap", "malformed", "too-slow", "past-the-connection-limit"],
)
def test_what_the_server_answers_before_the_app_is_json_with_the_security_headers(
    tmp_path, monkeypatch, limits, sent, status
):
    """waitress's own refusals (plain text, no headers of the app's) and the server's 408 and
    503: JSON a client can parse, and no less protected than the app's answers."""
    for name, value in limits.items():
        monkeypatch.setattr(wsgi, name, value)
    with serving(offline_config(tmp_path, MAX_UPLOAD_MB=0.05)) as (url, _):
        code, headers, body = reply_to(url, sent)
    assert code == str(status) and headers["Content-Type"] == "application/json"
    assert {name: headers.get(name) for name in SECURITY_HEADERS} == SECURITY_HEADERS
    answer = json.loads(body)
    assert answer["code"] == status and answer["message"]


def test_closing_the_server_ends_its_loop_while_a_client_keeps_its_connection_open(tmp_path):
    """An idle kept-alive connection (a browser's), to the public port and to the operators',
    must not keep the serve loop, and the thread that runs it, going after close()."""
    config = offline_config(tmp_path, METRICS_ADDRESS="127.0.0.1:0")
    server = wsgi.make_server(create_app(config), "127.0.0.1", 0, threads=1)
    loop = threading.Thread(target=server.run, daemon=True)
    loop.start()
    ports = (server.effective_port, server.operator.effective_port)
    paths = ("/", "/metrics")
    clients = [http.client.HTTPConnection("127.0.0.1", int(port), timeout=10) for port in ports]
    try:
        for client, path in zip(clients, paths, strict=True):
            client.request("GET", path)
            answer = client.getresponse()
            answer.read()  # the whole answer: what is left on the socket is the server's close
            assert answer.status == 200 and not answer.will_close, path  # it stays open
        server.close()
        loop.join(timeout=5)
        assert not loop.is_alive(), "the serve loop still runs after close()"
        assert all(client.sock.recv(1) == b"" for client in clients), "a connection stayed open"
    finally:
        for client in clients:
            client.close()


def test_an_answer_leaves_in_one_send_with_its_header(tmp_path, monkeypatch):
    """waitress sent the header alone first: an instance killed before its body followed left
    the balancer a header it had passed on, unable to retry elsewhere. Every byte each
    connection sends is recorded here: the first send must hold the whole answer."""
    sent: list[bytes] = []
    send = wsgi.Channel.send

    def recorded(channel: wsgi.Channel, data: bytes, do_close: bool = True) -> int:
        count = send(channel, data, do_close)
        sent.append(bytes(data[:count]))
        return count

    monkeypatch.setattr(wsgi.Channel, "send", recorded)
    with serving(offline_config(tmp_path)) as (url, _):
        host, port = url.removeprefix("http://").split(":")
        client = http.client.HTTPConnection(host, int(port), timeout=10)
        client.request("GET", "/")
        page = client.getresponse().read()
        client.close()
    assert len(page) > 1000 and len(sent) == 1, [len(chunk) for chunk in sent]
    head, _, body = sent[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and body == page
