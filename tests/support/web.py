"""The web app without a TorchServe, and uploads to it through Flask's test client."""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flask import Flask

from frontend_server import create_app
from frontend_server.wsgi import make_server
from petseg.serving.launcher import free_ports

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
"""What every answer of the web app and of its operators' listener must carry, spelt out here
rather than read from frontend_server.security, so that a weakened policy fails the tests."""


def security_headers(response) -> dict[str, str | None]:
    """``response``'s values of the ``SECURITY_HEADERS`` (None for a missing one)."""
    return {name: response.headers.get(name) for name in SECURITY_HEADERS}


def offline_config(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """Settings of an app whose TorchServe is down: nothing listens, no key file."""
    port = free_ports(1)[0]
    return {
        "TORCHSERVE_INFERENCE_URL": f"http://127.0.0.1:{port}",
        "TORCHSERVE_MANAGEMENT_URL": f"http://127.0.0.1:{port}",
        "KEY_FILE": str(tmp_path / "missing.json"),
        **overrides,
    }


def upload(client, data: bytes, name: str = "cat.jpg", output: str | None = None, field="file"):
    query = f"?output={output}" if output else ""
    return client.post(
        f"/api/segment{query}",
        data={field: (io.BytesIO(data), name)},
        content_type="multipart/form-data",
    )


def sample(app: Flask, name: str, **labels: str) -> float:
    """A value of the app's metrics (0 for a series that does not exist yet)."""
    return app.extensions["metrics"].registry.get_sample_value(name, labels) or 0.0


@contextlib.contextmanager
def serving(config: dict[str, Any]) -> Iterator[tuple[str, str | None]]:
    """The app under its production server: (public URL, operators' URL or None)."""
    server = make_server(create_app(config), "127.0.0.1", 0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    operator = server.operator and f"http://127.0.0.1:{server.operator.effective_port}"
    try:
        yield f"http://127.0.0.1:{server.effective_port}", operator
    finally:
        server.close()
        thread.join(timeout=10)
