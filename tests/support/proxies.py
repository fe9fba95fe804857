"""Stand-ins for web proxies' operators' listeners: real HTTP listeners that answer the
/status.json a proxy would, with a trial's counts (the fleet's decider reads them)."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from torchserve_client.rollout import Rollout, TrialCounts


def half(compared: int, agreement: float) -> TrialCounts:
    """What one proxy saw: ``compared`` photos at ``agreement`` each."""
    return TrialCounts(
        requests=compared,
        compared=compared,
        agreement=compared * agreement,
        iou={"cat": 0.5 * compared},
        classes={"cat": compared},
    )


@contextlib.contextmanager
def proxy_answering(body: object) -> Iterator[str]:
    """A listener that answers GET /status.json with ``body`` (JSON), as a proxy's does."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            payload = json.dumps(body).encode()
            self.send_response(200 if self.path == "/status.json" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def proxy_figures(trial: Rollout, counts: TrialCounts) -> dict:
    """A proxy's /status.json as frontend_server.rollout.Trial.figures makes it."""
    return {
        "rollout": {
            **trial.as_dict(),
            "decision": None,
            "stopped_here": None,
            "counts": counts.as_dict(),
        }
    }
