"""Request ids at the web app: kept when sensible, made otherwise, returned on every answer
and in every JSON error, first in the access-log line."""

from __future__ import annotations

import io
import logging
import re

import pytest

from frontend_server import create_app
from handler.protocol import REQUEST_ID_HEADER, valid_request_id
from tests.support import images
from tests.support.web import offline_config, upload

MADE = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def client(tmp_path):
    return create_app(offline_config(tmp_path, MAX_UPLOAD_MB=0.05)).test_client()


@pytest.mark.parametrize(
    "value",
    ["abc-123", "0af7651916cd43dd8448eb211c80319c", "00-4bf92f3577b3-00f067aa0ba9-01", "a+b/c=d"],
)
def test_sensible_ids_are_valid(value):
    assert valid_request_id(value) == value


@pytest.mark.parametrize(
    "value", [None, "", "two words", "x" * 129, "line\nbreak", "<script>", "a;b", "é"]
)
def test_other_ids_are_not(value):
    assert valid_request_id(value) is None


def test_every_answer_carries_the_callers_id_or_a_new_one(client):
    for response in (
        client.get("/", headers={REQUEST_ID_HEADER: "page-1"}),
        client.get("/api/health", headers={REQUEST_ID_HEADER: "page-1"}),
        client.get("/nope", headers={REQUEST_ID_HEADER: "page-1"}),
    ):
        assert response.headers[REQUEST_ID_HEADER] == "page-1"
    made = client.get("/api/health").headers[REQUEST_ID_HEADER]
    other = client.get("/api/health").headers[REQUEST_ID_HEADER]
    assert MADE.fullmatch(made) and MADE.fullmatch(other) and made != other
    replaced = client.get("/api/health", headers={REQUEST_ID_HEADER: "not an id"})
    assert MADE.fullmatch(replaced.headers[REQUEST_ID_HEADER])


def test_json_errors_carry_the_request_id(client):
    headers = {REQUEST_ID_HEADER: "upload-7"}
    no_file = client.post("/api/segment", data={}, headers=headers)
    too_large = client.post(
        "/api/segment",
        data={"file": (io.BytesIO(b"\xff" * 300_000), "big.jpg")},
        content_type="multipart/form-data",
        headers=headers,
    )
    down = upload(client, images.jpeg())
    for response, status in ((no_file, 400), (too_large, 413), (client.get("/nope"), 404)):
        assert response.status_code == status
        assert response.get_json()["request_id"] == response.headers[REQUEST_ID_HEADER]
    assert no_file.get_json()["request_id"] == too_large.get_json()["request_id"] == "upload-7"
    assert down.status_code == 503
    assert down.get_json()["request_id"] == down.headers[REQUEST_ID_HEADER]


def test_the_access_log_line_starts_with_the_id_and_says_how_the_upload_ended(client, caplog):
    with caplog.at_level(logging.INFO, logger="frontend_server.access"):
        upload(client, images.jpeg())
        client.get("/api/health", headers={REQUEST_ID_HEADER: "health-check"})
    lines = [r.getMessage() for r in caplog.records if r.name == "frontend_server.access"]
    assert re.fullmatch(
        r"[0-9a-f]{32} POST api.segment 503 [\d.]+ ms torchserve_down version=none "
        r"torchserve_id=-",
        lines[0],
    ), lines
    assert lines[1].startswith("health-check GET api.health 503 ")
