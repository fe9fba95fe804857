"""What the TorchServe client puts on the wire and how it treats connections: its key whatever
the user's environment says, streamed bodies with their length, kept-alive connections that
the server closed, answers that never come."""

from __future__ import annotations

import gc
import io
import json
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from torchserve_client import TorchServe, Unreachable, transport

KEYS = {"inference": "inference-key", "management": "management-key", "API": "api-key"}


@dataclass
class Received:
    """One request as the server read it, and on which of its connections."""

    connection: int
    head: str
    body: bytes

    def header(self, name: str) -> str | None:
        for line in self.head.split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.lower() == name.lower():
                return value.strip()
        return None


@dataclass
class Server:
    """A raw HTTP/1.1 server on a thread: ``reply(received)`` gives the bytes to answer (None:
    answer nothing and wait; b"": close without answering), ``close_after`` closes each
    connection after that many answers; ``early`` answers before reading the body, then closes."""

    reply: Callable[[Received], bytes | None]
    close_after: int = 1_000
    early: bool = False
    received: list[Received] = field(default_factory=list)

    def serve(self, listener: socket.socket) -> None:
        for number in range(1_000):
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self.converse, args=(sock, number), daemon=True).start()

    def converse(self, sock: socket.socket, number: int) -> None:
        with sock, sock.makefile("rb") as stream:
            for _ in range(self.close_after):
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = stream.readline()
                    if not line:
                        return
                    head += line
                received = Received(number, head.decode(), b"")
                if self.early:
                    self.received.append(received)
                    sock.sendall(self.reply(received))
                    return
                received.body = stream.read(int(received.header("Content-Length") or 0))
                self.received.append(received)
                answer = self.reply(received)
                if answer is None:
                    stream.read()  # until the client gives up
                if not answer:
                    return
                sock.sendall(answer)


def ok(body: bytes = b"{}") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )


@pytest.fixture
def serve(tmp_path) -> Iterator[Callable[..., tuple[Server, TorchServe]]]:
    """Start a ``Server`` and a TorchServe client of it."""
    key_file = tmp_path / "key_file.json"
    key_file.write_text(json.dumps({kind: {"key": key} for kind, key in KEYS.items()}))
    listeners: list[socket.socket] = []

    def start(reply: Callable[[Received], bytes | None] = lambda _: ok(), **options):
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)
        server = Server(reply, **options)
        threading.Thread(target=server.serve, args=(listener,), daemon=True).start()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        return server, TorchServe(url, url, key_file, timeout=5)

    yield start
    for listener in listeners:
        listener.close()


def test_a_netrc_entry_or_proxy_in_the_environment_changes_nothing(serve, tmp_path, monkeypatch):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    server, client = serve()
    for _ in range(2):
        assert client.predict(b"\xff\xd8 a photo", "image/jpeg").status_code == 200
    client.close()
    auth = [r.header("Authorization") for r in server.received]
    assert auth == ["Bearer inference-key", "Bearer inference-key"]
    assert server.received[0].head.startswith("POST /predictions/petseg HTTP/1.1")


def test_a_stream_is_sent_from_where_it_stands_with_its_length(serve):
    server, client = serve()
    photo = io.BytesIO(b"envelope" + bytes(range(256)) * 2_000)
    photo.seek(8)
    client.connections.send("POST", client.inference_url + "/p", {}, photo, 5)
    (received,) = server.received
    assert received.header("Content-Length") == str(512_000)
    assert received.header("Transfer-Encoding") is None
    assert received.body == bytes(range(256)) * 2_000


def test_one_connection_is_kept_alive_for_many_calls(serve):
    server, client = serve()
    for _ in range(3):
        client.list_models()
    assert [r.connection for r in server.received] == [0, 0, 0]
    assert server.received[0].header("User-Agent") == "petseg-client"


def test_a_connection_the_server_closed_while_idle_is_replaced(serve):
    server, client = serve(close_after=1)  # answers, then closes without saying so
    photo = io.BytesIO(b"\xff\xd8 a photo")
    answers = [client.predict(photo, "image/jpeg").status_code for _ in range(3)]
    assert answers == [200, 200, 200]
    assert [r.connection for r in server.received] == [0, 1, 2]
    assert all(r.body == b"\xff\xd8 a photo" for r in server.received)


def test_a_connection_closed_after_the_check_is_replaced_and_the_stream_sent_again(
    serve, monkeypatch
):
    monkeypatch.setattr(transport, "dropped", lambda sock: False)  # the close comes unseen
    server, client = serve(close_after=1)
    photo = io.BytesIO(b"\xff\xd8 a photo")
    answers = [client.predict(photo, "image/jpeg").status_code for _ in range(3)]
    assert answers == [200, 200, 200]
    assert [r.body for r in server.received] == [b"\xff\xd8 a photo"] * 3


def test_a_refused_key_is_renewed_and_the_stream_sent_again(serve, tmp_path):
    def reply(received: Received) -> bytes:
        if received.header("Authorization") == "Bearer inference-key":
            return b"HTTP/1.1 400 Bad Request\r\nContent-Length: 19\r\n\r\nInvalidKeyException"
        if received.head.startswith("GET /token?type=inference "):
            keys = {**KEYS, "inference": "renewed-key"}
            key_file.write_text(json.dumps({kind: {"key": key} for kind, key in keys.items()}))
        return ok()

    key_file = tmp_path / "key_file.json"
    server, client = serve(reply)
    assert client.predict(io.BytesIO(b"a photo"), "image/jpeg").status_code == 200
    sent = [(r.head.split(" ", 2)[1], r.header("Authorization"), r.body) for r in server.received]
    assert sent == [
        ("/predictions/petseg", "Bearer inference-key", b"a photo"),
        ("/token?type=inference", "Bearer api-key", b""),
        ("/predictions/petseg", "Bearer renewed-key", b"a photo"),
    ]


def test_a_prediction_dropped_unanswered_is_sent_again_a_change_is_not(serve):
    answers = iter([ok(), b"", ok(), ok(), b""])
    server, client = serve(lambda _: next(answers))
    assert client.predict(b"a photo", "image/jpeg").status_code == 200
    assert client.predict(b"a photo", "image/jpeg").status_code == 200  # dropped, sent again
    client.list_models()
    with pytest.raises(Unreachable, match="not reachable"):
        client.register("petseg.mar")  # read, then dropped: it may have been done
    sent = [(r.connection, r.head.split(" ")[0]) for r in server.received]
    assert sent == [(0, "POST"), (0, "POST"), (1, "POST"), (1, "GET"), (1, "POST")]


def test_an_answer_given_before_the_body_was_read_is_not_lost(serve):
    too_large = b"HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 0\r\n\r\n"
    server, client = serve(lambda _: too_large, early=True)
    answer = client.predict(bytes(32 * 1024 * 1024), "image/jpeg")
    assert answer.status_code == 413
    assert len(server.received) == 1


def test_a_request_that_fails_before_it_is_sent_leaves_the_connection_usable(serve):
    server, client = serve()
    client.list_models()
    with pytest.raises(ValueError, match="header"):
        client.connections.send("GET", client.management_url + "/models", {"X": "a\r\nb"}, None, 5)
    client.list_models()
    assert [r.head.split(" ")[0] for r in server.received] == ["GET", "GET"]


def test_an_answer_that_never_comes_times_out(serve):
    _, client = serve(lambda _: None)
    client.timeout = 0.3
    with pytest.raises(Unreachable) as caught:
        client.predict(b"a photo", "image/jpeg")
    assert caught.value.timed_out and "within 0.3 s" in caught.value.message


def test_a_garbled_answer_is_an_unreachable_torchserve(serve):
    _, client = serve(lambda _: b"SMTP ready\r\n\r\n")
    with pytest.raises(Unreachable, match="not reachable") as caught:
        client.predict(b"a photo", "image/jpeg")
    assert not caught.value.timed_out
    assert client.health().detail.startswith("TorchServe is not reachable at http://127.0.0.1:")


def test_a_closed_connection_is_seen_before_a_body_is_sent_into_it():
    ours, theirs = socket.socketpair()
    with ours:
        assert not transport.dropped(ours)
        theirs.close()
        assert transport.dropped(ours)


def test_a_client_dropped_in_a_reference_cycle_closes_its_connections_without_a_warning(
    serve, monkeypatch
):
    """A discarded Flask app holds its client in a cycle: the collector finalizes the whole
    cycle, in no set order, and an open socket finalized there warns in whatever runs then."""
    unraised = []
    monkeypatch.setattr(sys, "unraisablehook", unraised.append)
    for _ in range(3):  # each collection takes a while once torch is loaded
        _, client = serve()
        client.list_models()
        (connection,) = client.connections._pool().connections.values()
        opened = connection.sock
        cycle = {"client": client}
        cycle["cycle"] = cycle
        del client, connection, cycle
        gc.collect()
        assert opened.fileno() == -1, "the connection stayed open"
    assert not [u.exc_value for u in unraised if isinstance(u.exc_value, ResourceWarning)]
