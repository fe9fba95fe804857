"""The WSGI server for the app: waitress, with the limits an untrusted network needs."""

from __future__ import annotations

from flask import Flask
from waitress import create_server
from waitress.server import BaseWSGIServer

CONNECTION_LIMIT = 1000
"""waitress's default of 100 open connections was exhausted by 16 clients opening a connection
per request (tests/system/test_reliability.py): new clients then hung until they timed out."""


def make_server(app: Flask, host: str, port: int, threads: int = 16) -> BaseWSGIServer:
    """A waitress server for ``app``; ``port`` 0 picks a free one (see ``effective_port``).

    waitress receives a whole request body (chunked ones too) before the app runs, spooling
    it to a temporary file. Its cap is twice the app's own upload limit: bodies over the app's
    limit get the app's JSON 413, and no client can make the server store more than the cap
    (beyond it waitress answers a plain-text 413 while the body is still arriving).
    """
    return create_server(
        app,
        host=host,
        port=port,
        threads=threads,
        connection_limit=CONNECTION_LIMIT,
        max_request_body_size=2 * app.config["MAX_CONTENT_LENGTH"],
    )
