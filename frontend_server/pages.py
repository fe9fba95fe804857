"""The page itself: static HTML/CSS/JS, no templates, nothing from a CDN."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, current_app

bp = Blueprint("pages", __name__)


@bp.get("/")
def index() -> Response:
    """The page's HTML, sent as bytes (a few kB) rather than as an open file."""
    return Response(
        (Path(current_app.static_folder) / "index.html").read_bytes(), mimetype="text/html"
    )
