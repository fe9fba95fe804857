"""The operators' listener: GET /metrics (Prometheus's text format) and GET /status (what is
served: frontend_server.status), on an address of their own, ``METRICS_ADDRESS``
(``PETSEG_METRICS_ADDRESS``).

The public app has no such routes, so no path trick on the public port (``/api/../metrics``,
``%2e%2e``, an absolute URL in the request line) can reach them: there is nothing to reach.
Bind the listener to loopback (`petseg run`: 127.0.0.1:5001), or in a cluster to the pod's
address on a port that only the monitoring namespace may reach (docs/monitoring.md). What it
serves holds counts, timings, version strings, worker counts and what TorchServe could not serve
of its state (archive names, never a key, a URL or a path).
"""

from __future__ import annotations

import socket
from pathlib import Path

from flask import Flask, Response, jsonify, render_template, request, send_from_directory
from prometheus_client.exposition import choose_encoder
from waitress.server import BaseWSGIServer, create_server

from frontend_server import security
from frontend_server.metrics import ProxyMetrics
from frontend_server.rollout import Trial
from frontend_server.status import status
from torchserve_client import TorchServe

THREADS = 2
CONNECTION_LIMIT = 32
"""A scraper and a few operators' browsers; the listener is not meant for the public."""
REFRESH_S = 5
"""The status page reloads itself this often."""
STATIC = Path(__file__).parent / "static"
STATUS_STYLESHEET = "status.css"


def operator_app(metrics: ProxyMetrics, client: TorchServe, trial: Trial) -> Flask:
    """A small app over the public app's metrics, its TorchServe ``client`` and the rollout
    ``trial``: /metrics, /status (and /status.json for `petseg rollout status`), the status
    page's stylesheet, and nothing else (none of the public page's files)."""
    app = Flask(__name__, static_folder=None)
    security.register(app)

    @app.get(f"/static/{STATUS_STYLESHEET}")
    def stylesheet() -> Response:
        return send_from_directory(STATIC, STATUS_STYLESHEET)

    @app.get("/metrics")
    def scrape() -> Response:
        encode, content_type = choose_encoder(request.headers.get("Accept"))
        return Response(encode(metrics.registry), content_type=content_type)

    @app.get("/status")
    def status_page() -> str:
        return render_template("status.html", refresh_s=REFRESH_S, **status(client, trial))

    @app.get("/status.json")
    def status_json() -> Response:
        return jsonify(status(client, trial))

    return app


def parse_address(address: str) -> tuple[str, int]:
    """'host:port' (a bracketed IPv6 host too) -> (host, port)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"METRICS_ADDRESS={address!r}: give host:port, such as 127.0.0.1:5001")
    return host.strip("[]"), int(port)


def operator_server(app: Flask) -> BaseWSGIServer | None:
    """The listener for ``app``'s metrics, bound now (port 0: any free one), or None when
    ``METRICS_ADDRESS`` is empty. It has a socket map of its own: run it in its own thread."""
    address = app.config["METRICS_ADDRESS"]
    if not address:
        return None
    host, port = parse_address(address)
    # Bound here, before waitress starts threads and a wake-up pipe that a failed bind leaks.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        listener = socket.create_server((host, port), family=family)
    except OSError as exc:
        raise OSError(
            exc.errno,
            f"the operators' listener cannot bind {address} ({exc.strerror}): set "
            "PETSEG_METRICS_ADDRESS to another host:port, or to nothing for none",
        ) from exc
    return create_server(
        operator_app(
            app.extensions["metrics"], app.extensions["torchserve"], app.extensions["trial"]
        ),
        map={},
        sockets=[listener],
        threads=THREADS,
        connection_limit=CONNECTION_LIMIT,
        channel_timeout=10,
        asyncore_use_poll=True,
    )
