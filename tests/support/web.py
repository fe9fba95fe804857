"""Uploads to the web app through Flask's test client."""

from __future__ import annotations

import io


def upload(client, data: bytes, name: str = "cat.jpg", output: str | None = None, field="file"):
    query = f"?output={output}" if output else ""
    return client.post(
        f"/api/segment{query}",
        data={field: (io.BytesIO(data), name)},
        content_type="multipart/form-data",
    )
