"""GET /api/openapi.json: a valid OpenAPI 3.1 document that describes the app's /api routes, all of
them and nothing else, with the forms of answer and the fields the protocol defines
(tests/integration/test_openapi.py holds the real answers to it)."""

from __future__ import annotations

import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from frontend_server import create_app
from handler.protocol import IMAGE_FIELDS, OUTPUT_FIELD, OUTPUTS, REQUEST_ID_HEADER
from tests.support.web import offline_config

IMPLICIT = {"HEAD", "OPTIONS"}
"""Methods Flask answers on every route by itself."""


@pytest.fixture
def app(tmp_path):
    return create_app(offline_config(tmp_path, MAX_UPLOAD_MB=7))


@pytest.fixture
def document(app) -> dict:
    response = app.test_client().get("/api/openapi.json")
    assert response.status_code == 200 and response.content_type == "application/json"
    return response.get_json()


def operations(document: dict) -> set[tuple[str, str]]:
    return {(path, method.upper()) for path, item in document["paths"].items() for method in item}


def test_the_document_is_valid_openapi_3_1(document) -> None:
    assert document["openapi"].startswith("3.1.")
    validate(document)


def test_the_validation_is_not_lax(document) -> None:
    """The check above could pass by accepting anything: a response without its description,
    which OpenAPI requires, fails."""
    del document["paths"]["/api/health"]["get"]["responses"]["200"]["description"]
    with pytest.raises(OpenAPIValidationError):
        validate(document)


def test_every_api_route_is_described_and_nothing_else(app, document) -> None:
    routes = {
        (rule.rule, method)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/")
        for method in rule.methods - IMPLICIT
    }
    assert operations(document) == routes


def test_the_forms_of_answer_are_the_protocols(document) -> None:
    segment = document["paths"]["/api/segment"]["post"]
    [output] = [p for p in segment["parameters"] if p["name"] == OUTPUT_FIELD]
    assert output["in"] == "query" and output["schema"]["enum"] == list(OUTPUTS)
    assert set(segment["responses"]["200"]["content"]) == set(OUTPUTS.values())
    form = segment["requestBody"]["content"]["multipart/form-data"]
    assert list(form["schema"]["properties"]) == list(IMAGE_FIELDS)


def test_the_upload_limit_is_the_apps(document) -> None:
    segment = document["paths"]["/api/segment"]["post"]
    assert "up to 7 MB" in segment["requestBody"]["description"]
    assert "over 7 MB" in segment["responses"]["413"]["description"]


def test_every_answer_describes_the_request_id_header(document) -> None:
    """The app sets it on every answer (frontend_server.observe); the server's own refusals
    (408, a busy 503) come before the app and lack it, so only a success must carry it."""
    shared = document["components"]["responses"]
    for path, item in document["paths"].items():
        for operation in item.values():
            for status, answer in operation["responses"].items():
                answer = shared.get(answer.get("$ref", "").rpartition("/")[2], answer)
                header = answer["headers"][REQUEST_ID_HEADER]
                assert header["required"] or not status.startswith("2"), (path, status)
