"""Slow and many clients ("slow loris") against the web server: it stays up, bounded and fair.

The web server runs as `make run` runs it (``petseg run``, in a process of its own, so that its
descriptors, memory and temporary files can be measured from outside). Floods are raw sockets
driven by one thread each, not thousands of threads.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import requests

from frontend_server import create_app, wsgi
from petseg import cli
from petseg.serving import demo
from petseg.serving.demo import external_command, web_environment
from petseg.serving.launcher import ROOT, Instance, free_ports, unused_ports
from tests.support import images, traffic
from tests.support.waiting import wait_for
from torchserve_client import ServingReport

UPLOAD = images.jpeg(160, 120)
OVER_LIMIT = wsgi.CONNECTION_LIMIT + 200
"""Connections of the flood past the limit: more than select() could ever watch."""


class Flood:
    """``count`` connections to ``port``, all driven by one thread.

    Each connection sends ``head`` at once, then ``step`` more bytes of ``tail`` (repeated
    without end) every ``interval`` seconds, up to ``length`` bytes in all when given. What the
    server does to a connection (answers it, closes it, resets it) is counted in ``outcomes``
    and the connection is replaced on the next tick, so the pressure lasts until ``stop``.
    """

    def __init__(
        self,
        port: int,
        count: int,
        head: bytes,
        tail: bytes,
        step: int = 1,
        interval: float = 1.0,
        length: int | None = None,
    ) -> None:
        self.port = port
        self.count = count
        self.head = head
        self.tail = tail * (step // len(tail) + 2)
        self.period = len(tail)
        self.step = step
        self.interval = interval
        self.length = length
        self.outcomes: Counter[str] = Counter()
        self.opened = 0
        self._sent: dict[socket.socket, int] = {}
        self._selector = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._silent = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Flood:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def open(self) -> int:
        return len(self._sent)

    def silence(self) -> None:
        """Send nothing more and open no more connections, but keep those still open: an
        attacker that goes quiet without hanging up."""
        self._silent.set()

    def stop(self) -> None:
        """End the flood and close every connection it holds."""
        self._stop.set()
        self._thread.join(timeout=30)
        for sock in list(self._sent):
            self._drop(sock)
        self._selector.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            tick = time.monotonic() + self.interval
            if not self._silent.is_set():
                for _ in range(self.count - len(self._sent)):
                    self._connect()
                for sock in list(self._sent):
                    self._send(sock)
            while not self._stop.is_set() and (left := tick - time.monotonic()) > 0:
                for key, _ in self._selector.select(min(left, 0.1)):
                    self._read(key.fileobj)

    def _connect(self) -> None:
        sock = socket.socket()
        sock.setblocking(False)
        code = sock.connect_ex(("127.0.0.1", self.port))
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            self.outcomes["refused"] += 1
            return
        self.opened += 1
        self._sent[sock] = 0
        self._selector.register(sock, selectors.EVENT_READ)

    def _send(self, sock: socket.socket) -> None:
        sent = self._sent[sock]
        if sent < len(self.head):
            data = self.head[sent:]
        else:
            start = (sent - len(self.head)) % self.period
            data = self.tail[start : start + self.step]
        if self.length is not None:
            data = data[: self.length - sent]
        if not data:
            return
        try:
            self._sent[sock] += sock.send(data)
        except BlockingIOError:
            pass  # still connecting, or the server's window is full: next tick
        except OSError:
            self._drop(sock, "reset")

    def _read(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            self._drop(sock, "reset")
            return
        if data.startswith(b"HTTP/"):
            self._drop(sock, data.split()[1].decode())
        else:
            self._drop(sock, "closed")

    def _drop(self, sock: socket.socket, outcome: str | None = None) -> None:
        self._selector.unregister(sock)
        sock.close()
        del self._sent[sock]
        if outcome:
            self.outcomes[outcome] += 1


def slow_headers(port: int, count: int) -> Flood:
    """Connections that send a request's headers one byte a second and never end them."""
    head = b"POST /api/segment HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    return Flood(port, count, head, b"X-Loris: 1\r\n")


def slow_bodies(
    port: int,
    count: int,
    size: int = 10 * 2**20,
    step: int = 1,
    interval: float = 1.0,
    path: str = "/api/segment",
) -> Flood:
    """Connections that announce a ``size``-byte upload to ``path`` and send ``step`` bytes of
    it per ``interval``."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\n"
        f"Content-Length: {size}\r\n\r\n"
    ).encode()
    return Flood(port, count, head, b"\0", step, interval, len(head) + size)


@dataclass
class Upload:
    outcome: str
    """The status code, or the exception's name when no answer came."""
    seconds: float


def upload(url: str, body: bytes = UPLOAD, timeout: float = 30) -> Upload:
    started = time.monotonic()
    try:
        response = requests.post(
            f"{url}/api/segment", files={"file": ("a.jpg", body)}, timeout=timeout
        )
        outcome = str(response.status_code)
    except requests.RequestException as exc:
        outcome = type(exc).__name__
    return Upload(outcome, time.monotonic() - started)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Usage:
    """What a process holds: descriptors, bytes of deleted (temporary) files, resident memory."""

    fds: int = 0
    spooled: int = 0
    rss: int = 0

    @classmethod
    def of(cls, pid: int) -> Usage:
        fds = spooled = 0
        for fd in os.listdir(f"/proc/{pid}/fd"):
            fds += 1
            path = f"/proc/{pid}/fd/{fd}"
            with contextlib.suppress(OSError):  # closed while we looked
                if os.readlink(path).endswith(" (deleted)"):
                    spooled += os.stat(path).st_blocks * 512
        return cls(fds, spooled, psutil.Process(pid).memory_info().rss)


class Peak:
    """The highest ``Usage`` of ``pid`` seen while the context runs (sampled 10 times a second)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.high = Usage()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            now = Usage.of(self.pid)
            high = self.high
            self.high = Usage(
                max(high.fds, now.fds), max(high.spooled, now.spooled), max(high.rss, now.rss)
            )


@dataclass(frozen=True)
class Web:
    pid: int
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def web_server(log: Path, torchserve: Instance | None = None) -> Iterator[Web]:
    """``petseg run --external`` in front of ``torchserve`` (None: a port
    nothing listens on, as when TorchServe is down). Checks at the end that it is still alive
    and that it stops cleanly on SIGTERM."""
    port = free_ports(1)[0]
    if torchserve is None:  # free ports and a key file that does not exist
        torchserve = Instance(log.parent / "no-torchserve", ports=unused_ports())
    env = web_environment(torchserve)
    with log.open("wb") as out:
        process = subprocess.Popen(
            external_command(port), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    traffic.name_port(port, "web server (own process)")
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield Web(process.pid, port)
        assert process.poll() is None, f"the web server died:\n{log.read_text()}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0, log.read_text()


@pytest.fixture(scope="module", autouse=True)
def descriptors() -> Iterator[None]:
    """Descriptors for a flood past the connection limit, here and in the web server (which
    raises its own soft limit, wsgi.raise_fd_limit); a soft ``ulimit -n`` is often 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    server_needs = wsgi.CONNECTION_LIMIT * wsgi.FDS_PER_CONNECTION + wsgi.RESERVED_FDS
    needed = max(server_needs, OVER_LIMIT + 1024)
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"needs a hard ulimit -n of {needed}, not {hard}")
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def uploads_for(url: str, seconds: float) -> list[Upload]:
    """One client uploading back to back for ``seconds``."""
    done = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        done.append(upload(url))
    return done


def test_slow_headers_and_bodies_leave_other_uploads_fast(server, tmp_path):
    """300 slow-loris connections (well under the limit): no upload waits for a slow
    connection's deadline (p95 during the flood under a tenth of it: an upload queued behind
    the flood would wait seconds, and the machine's speed or other load moves the figure by far
    less), and every slow connection is cut by its deadline (408), so slots come back."""
    with web_server(tmp_path / "web.log", server) as web:
        quiet = [upload(web.url) for _ in range(40)]
        assert {u.outcome for u in quiet} == {"200"}
        with slow_headers(web.port, 150) as headers, slow_bodies(web.port, 150) as bodies:
            wait_for(lambda: Usage.of(web.pid).fds >= 300, 10, "the flood's connections")
            # Long enough for every first flood connection to reach its deadline.
            during = uploads_for(web.url, max(wsgi.HEADER_TIMEOUT_S, wsgi.BODY_GRACE_S) + 3)
        assert Counter(u.outcome for u in during) == {"200": len(during)}
        quiet_p50 = quantile([u.seconds for u in quiet], 0.5)
        flood_p95 = quantile([u.seconds for u in during], 0.95)
        assert flood_p95 < wsgi.HEADER_TIMEOUT_S / 10, (quiet_p50, flood_p95)
        assert headers.outcomes["408"] >= 150, headers.outcomes
        assert bodies.outcomes["408"] >= 150, bodies.outcomes
        print(
            f"300 slow: quiet p50 {1000 * quiet_p50:.0f} ms, flood p95 {1000 * flood_p95:.0f} "
            f"ms over {len(during)} uploads; flood {headers.outcomes + bodies.outcomes}"
        )


def test_past_the_connection_limit_new_clients_get_a_quick_503_and_service_resumes(
    server, tmp_path
):
    """More connections than the limit, and more descriptors than select() could watch: the
    server stays up, answers the surplus 503 at once, and serves again within seconds of the
    flood going quiet (even when the quiet connections are left open)."""
    with web_server(tmp_path / "web.log", server) as web:
        with slow_headers(web.port, OVER_LIMIT) as flood:
            wait_for(lambda: flood.outcomes["503"] > 0, 20, "503 past the limit")
            assert Usage.of(web.pid).fds > max(1024, wsgi.CONNECTION_LIMIT)
            during = [upload(web.url, timeout=10) for _ in range(40)]
            assert {u.outcome for u in during} <= {"200", "503"}, Counter(u.outcome for u in during)
            assert max(u.seconds for u in during) < 5
            flood.silence()
            recovery = wait_for(
                lambda: upload(web.url).outcome == "200",
                wsgi.HEADER_TIMEOUT_S + 5,
                "service after the flood",
            )
            assert [upload(web.url).outcome for _ in range(10)] == ["200"] * 10
        print(
            f"past the limit: {Counter(u.outcome for u in during)}; flood {flood.outcomes}; "
            f"recovered {recovery:.1f} s after the flood went quiet"
        )


def test_slow_large_uploads_stay_within_the_spool_budget(server, tmp_path):
    """100 uploads of 30 MB at 1 MB/s each would spool 3 GB: the server holds at most its
    budget on disk (the surplus gets 503), memory stays small, and all is freed afterwards."""
    budget = wsgi.SPOOL_BUDGET_UPLOADS * 2 * create_app().config["MAX_CONTENT_LENGTH"]
    count = 100
    with web_server(tmp_path / "web.log", server) as web:
        before = Usage.of(web.pid)
        flood = slow_bodies(web.port, count, 30 * 2**20, step=2**18, interval=0.25)
        with Peak(web.pid) as peak, flood:
            wait_for(lambda: flood.outcomes["503"] >= count, 30, "503 past the budget")
        # One read (8 KiB) per connection may land past the budget before it is refused.
        assert peak.high.spooled <= budget + count * 8 * 1024, (peak.high, budget)
        assert peak.high.rss - before.rss < 64 * 2**20, (before, peak.high)
        wait_for(lambda: Usage.of(web.pid).spooled == 0, 10, "temporary files freed")
        assert upload(web.url).outcome == "200"
        print(f"spool budget {budget / 2**20:.0f} MiB: peak {peak.high}, before {before}")


def test_the_same_flood_against_torchserve_directly_is_recorded(server, record_property):
    """What TorchServe's own (netty) frontend does with slow clients, for docs/guarantees.md: it
    has no deadline for slow requests and no connection limit; recorded here, not asserted,
    except that it still serves afterwards."""
    java = next(
        c.pid
        for c in psutil.net_connections("tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == server.ports.inference
    )
    url = server.url("inference", "/predictions/petseg")
    headers = {
        "Authorization": f"Bearer {server.keys()['inference']}",
        "Content-Type": "image/jpeg",
    }

    def direct() -> Upload:
        started = time.monotonic()
        try:
            outcome = str(requests.post(url, data=UPLOAD, headers=headers, timeout=30).status_code)
        except requests.RequestException as exc:
            outcome = type(exc).__name__
        return Upload(outcome, time.monotonic() - started)

    quiet = [direct() for _ in range(20)]
    before = Usage.of(java)
    flood = slow_bodies(server.ports.inference, OVER_LIMIT, path="/predictions/petseg")
    with Peak(java) as peak, flood:
        wait_for(lambda: Usage.of(java).fds > OVER_LIMIT, 20, "the flood held")
        during = [direct() for _ in range(40)]
        held = flood.open
    assert direct().outcome == "200"
    figures = {
        "flood_connections": OVER_LIMIT,
        "held_by_torchserve": held,
        "closed_or_answered_by_torchserve": dict(flood.outcomes),
        "java_fds": (before.fds, peak.high.fds),
        "java_rss_mb": (before.rss // 2**20, peak.high.rss // 2**20),
        "direct_quiet_p50_ms": round(1000 * quantile([u.seconds for u in quiet], 0.5)),
        "direct_flood_p95_ms": round(1000 * quantile([u.seconds for u in during], 0.95)),
        "direct_flood_outcomes": dict(Counter(u.outcome for u in during)),
    }
    for name, value in figures.items():
        record_property(name, value)
    print(f"TorchServe direct, {OVER_LIMIT} slow uploads: {figures}")


def test_the_launcher_reports_a_dead_web_server_and_stops_torchserve(monkeypatch, capsys):
    """If the web server dies, `make run` says so, stops the TorchServe it started and exits 1.
    The death: the listener fails on the first connection (waitress alone would log it and go
    on without a listener); TorchServe's stand-in is a sleeping process."""
    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    stopped = []

    def stop(instance: Instance, process: subprocess.Popen) -> None:
        stopped.append(process)
        process.kill()
        process.wait()

    def broken_accept(self: wsgi.Server) -> None:
        raise RuntimeError("the listener broke")

    monkeypatch.setattr(demo, "torchserve_running", lambda instance: False)
    monkeypatch.setattr(demo, "start", lambda instance: stand_in)
    monkeypatch.setattr(demo, "bring_up", lambda *args: ServingReport("serving.json", True))
    monkeypatch.setattr(demo, "stop", stop)
    monkeypatch.setattr(wsgi.Server, "handle_accept", broken_accept)
    port = free_ports(1)[0]

    def knock() -> None:
        """Connect once the server listens (a new socket per try: a refused one is spent)."""
        for _ in range(200):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.05)

    knocker = threading.Thread(target=knock)
    knocker.start()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        args = cli.get_args_parser().parse_args(["run", "--port", str(port), "--threads", "1"])
        status = demo.run(args, Instance())
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        knocker.join()
        stand_in.kill()
        stand_in.wait()
    assert status == 1
    assert stopped == [stand_in]
    err = capsys.readouterr().err
    assert "RuntimeError: the listener broke" in err and "TorchServe stopped" in err, err
