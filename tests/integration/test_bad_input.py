"""The bad-input corpus, sent to TorchServe directly and through the proxy.

Every upload gets its documented answer: a 4xx JSON error whose message names the problem, or a
200 whose mask has the photo's (EXIF-oriented) size. The one exception is TorchServe's own size
limit: its Java frontend answers 413 with an empty body before any Python code runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import requests

from petseg.serving.launcher import Instance
from tests.support import images

OVER_EVERY_LIMIT = 30 * 2**20
"""Over TorchServe's max_request_size (25 MiB) and the proxy's upload limit (20 MB)."""


@dataclass(frozen=True)
class Case:
    name: str
    body: Callable[[], bytes] | None
    """The upload's bytes, sent as the raw body (direct) or as the multipart file (proxy)."""
    content_type: str = "image/jpeg"
    form: Callable[[], dict] | None = None
    """Instead of ``body``: the same multipart fields sent to both."""
    status: int = 200
    words: str = ""
    size: tuple[int, int] | None = None
    """For a 200: the mask's size."""


CORPUS = [
    Case("empty", lambda: b"", status=400, words="empty request"),
    Case(
        "text", lambda: b"just some words", "text/plain", status=415, words="not a supported image"
    ),
    Case(
        "html",
        lambda: b"<!doctype html><p>hi</p>",
        "text/html",
        status=415,
        words="not a supported image",
    ),
    Case(
        "json",
        lambda: b'{"image": "cat.jpg"}',
        "application/json",
        status=415,
        words="not a supported image",
    ),
    Case(
        "pdf",
        lambda: b"%PDF-1.4\n1 0 obj <<>> endobj\n%%EOF",
        "application/pdf",
        status=415,
        words="not a supported image",
    ),
    Case("truncated-jpeg", images.truncated_jpeg, status=400, words="truncated"),
    Case("png-bad-crc", images.png_with_bad_crc, "image/png", status=400, words="corrupt"),
    Case("1x1", lambda: images.png(1, 1), "image/png", status=400, words="at least 8"),
    Case(
        "jpeg-bomb-30000x30000",
        lambda: images.jpeg_claiming_size(30000, 30000),
        status=413,
        words="too large",
    ),
    Case(
        "png-bomb-30000x30000",
        lambda: images.png_claiming_size(30000, 30000),
        "image/png",
        status=413,
        words="too large",
    ),
    Case(
        "over-the-size-limit",
        lambda: b"\xff\xd8" + bytes(OVER_EVERY_LIMIT),
        status=413,
        words="too large",
    ),
    Case(
        "no-file", None, form=lambda: {"note": (None, "a cat")}, status=400, words="no image file"
    ),
    Case(
        "wrong-field-name",
        None,
        form=lambda: {"photo": ("cat.jpg", images.jpeg())},
        status=400,
        words="no image file",
    ),
    Case("animated-gif", images.animated_gif, "image/gif", size=(64, 48)),
    Case("16-bit-png", images.sixteen_bit_png, "image/png", size=(64, 48)),
    Case("cmyk-jpeg", images.GOOD["cmyk"], size=(160, 120)),
    Case("rgba-png", images.GOOD["rgba"], "image/png", size=(160, 120)),
    Case("grayscale-jpeg", images.GOOD["grayscale"], size=(160, 120)),
    Case("palette-png", images.GOOD["palette"], "image/png", size=(160, 120)),
    Case("webp", images.GOOD["webp"], "image/webp", size=(160, 120)),
    Case("exif-rotated-jpeg", lambda: images.exif_rotated_jpeg(160, 120), size=(120, 160)),
]


def send_direct(server: Instance, case: Case) -> requests.Response:
    headers = {"Authorization": f"Bearer {server.keys()['inference']}"}
    url = server.url("inference", "/predictions/petseg")
    if case.form is not None:
        return requests.post(url, files=case.form(), headers=headers, timeout=60)
    headers["Content-Type"] = case.content_type
    return requests.post(url, data=case.body(), headers=headers, timeout=60)


def send_through_proxy(proxy: str, case: Case) -> requests.Response:
    files = case.form() if case.form else {"file": ("upload", case.body(), case.content_type)}
    return requests.post(f"{proxy}/api/segment", files=files, timeout=60)


def check(response: requests.Response, case: Case, json_error: bool = True) -> None:
    assert response.status_code == case.status, response.text[:300]
    if case.status == 200:
        assert images.from_base64(response.json()["mask_png"]).size == case.size
    elif json_error:
        error = response.json()
        assert error["code"] == case.status and case.words in error["message"], error
        assert "Traceback" not in response.text


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.name)
def test_torchserve_directly(server, case):
    # TorchServe's Java frontend refuses an oversized body itself, with an empty 413.
    check(send_direct(server, case), case, json_error=case.name != "over-the-size-limit")


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.name)
def test_through_the_proxy(proxy, case):
    check(send_through_proxy(proxy, case), case)


def test_form_urlencoded_bytes_are_refused_by_the_proxy(proxy):
    # Sent directly, these make TorchServe's Java frontend answer 500 (see docs/guarantees.md).
    response = requests.post(
        f"{proxy}/api/segment",
        data=images.jpeg(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=30,
    )
    assert response.status_code == 400 and "no image file" in response.json()["message"]


def chunks(total: int, sent: list[int]):
    """``total`` bytes in 1 MiB chunks with no Content-Length (chunked); counts what was read."""
    while sent[0] < total:
        sent[0] += 2**20
        yield b"\xff" * 2**20


def test_an_oversized_chunked_upload_gets_json_413(proxy):
    sent = [0]
    response = requests.post(
        f"{proxy}/api/segment",
        data=chunks(OVER_EVERY_LIMIT, sent),
        headers={"Content-Type": "multipart/form-data; boundary=x"},
        timeout=60,
    )
    assert response.status_code == 413 and "the limit is 20 MB" in response.json()["message"]


def test_an_endless_chunked_upload_is_cut_off_not_stored(proxy):
    sent = [0]
    try:
        response = requests.post(
            f"{proxy}/api/segment",
            data=chunks(2**40, sent),
            headers={"Content-Type": "image/jpeg"},
            timeout=60,
        )
    except requests.ConnectionError:
        pass  # the server closed the connection while the body was still arriving
    else:
        assert response.status_code == 413
    # waitress stops at twice the upload limit (40 MiB); the rest is socket buffers.
    assert sent[0] < 64 * 2**20, f"the proxy read {sent[0] >> 20} MiB"


def test_text_no_header_can_carry_is_refused_or_not_sent_on(proxy):
    photo = {"file": ("cat.jpg", images.jpeg(), "image/jpeg")}
    url = f"{proxy}/api/segment"
    for tolerance in ("€", "nan", "1\r\nX-Injected: 1", "-1"):
        params = {"output": "polygons", "tolerance": tolerance}
        response = requests.post(url, params=params, files=photo, timeout=30)
        assert response.status_code == 400, tolerance
        assert response.json()["message"].startswith(f"tolerance={tolerance!r}")
    # A number in other digits is a number: sent on as one, not as typed.
    params = {"output": "polygons", "tolerance": "\uff15"}
    assert requests.post(url, params=params, files=photo, timeout=30).status_code == 200
    # A part type that is no plain media type goes on as octet-stream; the bytes decide.
    odd_type = {"file": ("cat.jpg", images.jpeg(), "image/j\u00e9g; x=\u20ac")}
    assert requests.post(url, files=odd_type, timeout=30).status_code == 200
