"""What every request leaves behind: an id, its metrics and a line in the access log.

The id is the caller's ``X-Request-ID`` when it is a sensible one (handler.protocol), else a
new one. It goes to TorchServe with the upload (its access log and the handler's log show
it), comes back in the answer's ``X-Request-ID`` header and in every JSON error, and starts
this app's access-log line, so one upload can be followed from here to the handler.

Timing starts when the app gets the request: waitress has read the whole body by then, so
a slow client's upload time is not the server's latency.
"""

from __future__ import annotations

import logging
import time
import uuid

from flask import Flask, Response, current_app, g, request
from flask.logging import has_level_handler

from frontend_server.metrics import NO_VERSION, SEGMENT_ROUTE, ProxyMetrics, outcome
from handler.protocol import REQUEST_ID_HEADER, valid_request_id

access_log = logging.getLogger("frontend_server.access")
UNMATCHED_ROUTE = "unmatched"
"""The route label of requests no route matched (404, and what path tricks get)."""


def register(app: Flask) -> None:
    app.before_request(start)
    app.after_request(finish)
    app.teardown_request(leave)
    if access_log.level == logging.NOTSET:
        access_log.setLevel(logging.INFO)
    if not has_level_handler(access_log):  # as Flask does for app.logger: stderr by default
        access_log.addHandler(logging.StreamHandler())


def _metrics() -> ProxyMetrics:
    return current_app.extensions["metrics"]


def start() -> None:
    g.request_id = valid_request_id(request.headers.get(REQUEST_ID_HEADER)) or uuid.uuid4().hex
    g.started = time.perf_counter()
    _metrics().series["in_flight"].inc()


def finish(response: Response) -> Response:
    """Runs for every answer, error handlers' included."""
    seconds = time.perf_counter() - g.started
    response.headers[REQUEST_ID_HEADER] = g.request_id
    route = request.endpoint or UNMATCHED_ROUTE
    version = g.get("model_version") or NO_VERSION
    metrics = _metrics()
    metrics.observe_request(route, response.status_code, version, seconds)
    detail = ""
    if route == SEGMENT_ROUTE:
        ending = outcome(response.status_code, g.get("cause"))
        metrics.observe_upload(request.content_length or 0, ending)
        detail = f" {ending} version={version} torchserve_id={g.get('torchserve_id') or '-'}"
    access_log.info(
        "%s %s %s %d %.1f ms%s",
        g.request_id,
        request.method,
        route,
        response.status_code,
        seconds * 1000,
        detail,
    )
    return response


def leave(error: BaseException | None) -> None:
    if g.pop("started", None) is not None:
        _metrics().series["in_flight"].dec()
