"""Security headers on every answer: the page, its static files, the API and every error.

The page shows pictures that strangers upload and text that comes back from the server (file
names, error messages). Should any of it ever end up in the markup, the Content-Security-Policy
keeps the browser from running it: scripts and styles load only from this server's files (none
inline: the page and the status page have none), pictures only from here or from the data:
and blob: URLs the page makes of an upload and its mask, requests go only back here, and
nothing may frame the page (clickjacking) or take its forms or links elsewhere. The other
headers stop old browsers from guessing a type (an upload answered as HTML), from framing the
page, and from telling other sites which page a visitor came from.
"""

from __future__ import annotations

from flask import Flask, Response

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",  # the upload is shown as a blob:, the masks as data:
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    )
)
HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def add_headers(response: Response) -> Response:
    """Set ``HEADERS`` on ``response`` (replacing any a view set)."""
    response.headers.update(HEADERS)
    return response


def register(app: Flask) -> None:
    """Send ``HEADERS`` with every answer of ``app``, error handlers' answers included."""
    app.after_request(add_headers)
