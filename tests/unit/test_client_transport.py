"""What the TorchServe client puts on the wire: its key, whatever the user's environment says."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest

from torchserve_client import TorchServe


class Recorder(BaseHTTPRequestHandler):
    """Answers 200 to any POST and keeps the Authorization header it got."""

    seen: ClassVar[list[str | None]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        Recorder.seen.append(self.headers.get("Authorization"))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    httpd = HTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    Recorder.seen = []
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=10)


def test_a_netrc_entry_for_the_host_never_replaces_the_key(server, tmp_path, monkeypatch):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    key_file = tmp_path / "key_file.json"
    keys = {"inference": "inference-key", "management": "management-key", "API": "api-key"}
    key_file.write_text(json.dumps({kind: {"key": key} for kind, key in keys.items()}))
    client = TorchServe(server, server, key_file)
    with client.session:
        for _ in range(2):  # the second call takes the environment settings kept by the first
            assert client.predict(b"\xff\xd8 a photo", "image/jpeg").status_code == 200
    assert Recorder.seen == ["Bearer inference-key", "Bearer inference-key"]
