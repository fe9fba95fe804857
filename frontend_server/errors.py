"""Every error leaves as JSON with a message and the right status, never as an HTML page."""

from __future__ import annotations

import logging

from flask import Flask, Response, g, jsonify
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from frontend_server.upstream import UpstreamError

logger = logging.getLogger(__name__)
RETRY_AFTER_S = 1


def error_response(status: int, message: str) -> Response:
    """The JSON error, with the request's id (frontend_server.observe) to quote in a report."""
    response = jsonify({"code": status, "message": message, "request_id": g.get("request_id")})
    response.status_code = status
    return response


def register(app: Flask) -> None:
    @app.errorhandler(UpstreamError)
    def upstream_error(exc: UpstreamError) -> Response:
        g.cause = exc.cause  # the metrics count uploads by it
        response = error_response(exc.status, exc.message)
        if exc.status == 503:
            # Overload, a restarting worker or TorchServe down: all pass within seconds.
            response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc: RequestEntityTooLarge) -> Response:
        limit = app.config["MAX_UPLOAD_MB"]
        return error_response(413, f"upload too large: the limit is {limit} MB")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        response = error_response(exc.code or 500, exc.description or exc.name)
        # The exception's own headers but its HTML type: a 405's Allow above all (RFC 9110
        # requires it), the methods the route does answer.
        for name, value in exc.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        logger.exception("unhandled error")
        return error_response(500, "internal error; the server log has the details")
