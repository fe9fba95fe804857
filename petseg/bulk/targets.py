"""Where a bulk run sends its photos: TorchServe itself, or the web API in front of it.

Both answer a photo with the same body (the web API passes TorchServe's answer on) and describe
the model with the same model card, so the run never asks which one it talks to: only how a
photo travels differs. TorchServe direct carries the keys of the instance's key file; the web
API (one web proxy, or the nginx balancer of a cluster) needs none. Both are safe to share
between threads: each thread keeps its own kept-alive connection.
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol
from urllib.parse import urlencode

from handler.protocol import IMAGE_FIELDS, OUTPUT_FIELD, upload_content_type
from torchserve_client import Reply, TorchServe, TorchServeError, error_message
from torchserve_client.transport import Connections

USER_AGENT = "petseg-bulk"
"""The web proxy's and nginx's access logs tell a bulk run's uploads from the page's."""


class Target(Protocol):
    where: str
    """Its URL, for the report."""

    def segment(self, photo: bytes, content_type: str | None, output: str) -> Reply:
        """The answer to one photo in the ``output`` form (handler.protocol.OUTPUTS)."""
        ...

    def model_card(self) -> dict[str, Any]:
        """The default version's card: name, version and classes (handler.model_card)."""
        ...


class Direct:
    """TorchServe's inference API, keys from its key file (renewed when they expire); the
    default version, or the one named."""

    def __init__(self, client: TorchServe, version: str | None = None) -> None:
        self.client = client
        self.version = version
        self.where = client.inference_url

    def segment(self, photo: bytes, content_type: str | None, output: str) -> Reply:
        return self.client.predict(photo, content_type, output, self.version)

    def model_card(self) -> dict[str, Any]:
        return self.client.model_card(self.version)


class WebApi:
    """POST URL/api/segment, the photo in the multipart field the web API documents."""

    def __init__(self, url: str, timeout: float) -> None:
        self.where = url.rstrip("/")
        self.timeout = timeout
        self.connections = Connections(USER_AGENT)

    def segment(self, photo: bytes, content_type: str | None, output: str) -> Reply:
        body, form_type = multipart(IMAGE_FIELDS[0], photo, upload_content_type(content_type))
        url = f"{self.where}/api/segment?{urlencode({OUTPUT_FIELD: output})}"
        headers = {"Content-Type": form_type}
        return self.connections.send("POST", url, headers, body, self.timeout, replayable=True)

    def model_card(self) -> dict[str, Any]:
        url = f"{self.where}/api/model"
        reply = self.connections.send("GET", url, {}, None, self.timeout, replayable=True)
        if reply.status_code != 200:
            message = f"{url} answered HTTP {reply.status_code}: {error_message(reply)}"
            raise TorchServeError(message, reply.status_code)
        return reply.json()


def multipart(field: str, data: bytes, content_type: str) -> tuple[bytes, str]:
    """A multipart/form-data body holding ``data`` as one file, and its Content-Type. The file
    is called "photo" whatever its name: nothing of the local path reaches the server's logs."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="photo"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    )
    body = b"".join([head.encode(), data, f"\r\n--{boundary}--\r\n".encode()])
    return body, f"multipart/form-data; boundary={boundary}"
