"""The web API's OpenAPI 3.1 description, served at GET /api/openapi.json.

Built from the names and values the code itself uses (handler.protocol: the outputs and their
media types, the image fields, the tolerance's range, the headers; the app's upload limit), so
none of them is written twice. This module holds the document and its routes (what each takes
and answers); frontend_server.openapi_schemas holds the shapes of the bodies, which the document
lists under components/schemas.

tests/unit/test_openapi.py holds the description to the app (every /api route described,
nothing else) and to the OpenAPI 3.1 schema; tests/integration/test_openapi.py runs schemathesis
with it against the proxy in front of a real TorchServe, and fails on any answer it does not
describe: a status, a media type, a header or a JSON field.
"""

from __future__ import annotations

from frontend_server.errors import RETRY_AFTER_S
from frontend_server.openapi_schemas import COUNT, STRING, Schema, array, obj, ref, schemas
from handler.protocol import (
    DEFAULT_OUTPUT,
    IMAGE_FIELDS,
    MAX_TOLERANCE,
    MODEL_VERSION_HEADER,
    OUTPUT_FIELD,
    OUTPUTS,
    REQUEST_ID_HEADER,
    REQUEST_ID_PATTERN,
    TOLERANCE_FIELD,
)
from model_training.progress import STATES as TRAINING_STATES

VERSION = "1.1.0"
"""This description's version (``info.version``): raise it when the API changes."""
JSON = "application/json"
UPLOAD_TYPES = "image/*, application/octet-stream"
"""What an image part may be labelled: the handler reads the bytes, whatever the label says."""


def header(description: str, schema: Schema = STRING, required: bool = True) -> Schema:
    return {"description": description, "required": required, "schema": schema}


def request_id(required: bool = True) -> Schema:
    return header(
        "the caller's id if it sent a sensible one, else a new one; in the server's and "
        "TorchServe's logs too",
        {"type": "string", "pattern": f"^{REQUEST_ID_PATTERN}$"},
        required,
    )


RETRY_AFTER = header("seconds", {"type": "integer", "minimum": 0, "examples": [RETRY_AFTER_S]})


def answer(description: str, content: Schema, **headers: Schema) -> Schema:
    return {"description": description, "headers": headers, "content": content}


def json_answer(
    description: str, schema: Schema, *, from_app: bool = True, **headers: Schema
) -> Schema:
    """A JSON answer; ``from_app``: the app wrote it (with the request's id), not the server."""
    return answer(
        description,
        {JSON: {"schema": schema}},
        **{REQUEST_ID_HEADER: request_id(required=from_app), **headers},
    )


def error(description: str, *, from_app: bool = True, **headers: Schema) -> Schema:
    """A JSON error (see ``json_answer``)."""
    return json_answer(description, ref("Error"), from_app=from_app, **headers)


def responses() -> dict[str, Schema]:
    """The answers several routes share."""
    return {
        "TooSlow": error(
            "the request's headers or body arrived too slowly (the server's deadline); the "
            "connection is closed",
            from_app=False,
        ),
        "Unavailable": error(
            "TorchServe is down or restarting, the model has no ready worker or its queue is "
            "full, or the server holds too many connections or uploads: retry",
            from_app=False,
            **{"Retry-After": RETRY_AFTER},
        ),
        "Timeout": error("TorchServe did not answer in time"),
        "Internal": error("a fault of the server; its log has the details under the request id"),
        "UnknownVersion": error("TorchServe holds no such version of the model"),
    }


SHARED_STATUSES = {
    "UnknownVersion": "404",
    "TooSlow": "408",
    "Internal": "500",
    "Unavailable": "503",
    "Timeout": "504",
}


def shared(*names: str) -> dict[str, Schema]:
    """References to ``responses()`` by their status."""
    return {SHARED_STATUSES[name]: {"$ref": f"#/components/responses/{name}"} for name in names}


VERSION_PARAMETER: Schema = {
    "name": "version",
    "in": "query",
    "description": "a version TorchServe holds (GET /api/model lists them); the default one "
    "if absent",
    "schema": STRING,
}
CALLER_ID: Schema = {
    "name": REQUEST_ID_HEADER,
    "in": "header",
    "description": f"an id of the caller's to follow the upload by; kept if it matches "
    f"{REQUEST_ID_PATTERN}, else replaced by a new one",
    "schema": STRING,
}
OUTPUT_SCHEMAS = {
    "json": ref("Segmentation"),
    "mask": {"type": "string", "contentMediaType": OUTPUTS["mask"]},
    "overlay": {"type": "string", "contentMediaType": OUTPUTS["overlay"]},
    "rle": ref("RleMasks"),
    "polygons": ref("Polygons"),
    "labels": ref("Labels"),
}
"""Each output's body (handler.protocol.OUTPUTS holds its media type)."""


def operation(
    operation_id: str,
    summary: str,
    responses: dict[str, Schema],
    *,
    description: str | None = None,
    parameters: tuple[Schema, ...] = (CALLER_ID,),
    request_body: Schema | None = None,
) -> Schema:
    """One route's operation, its fields in the order OpenAPI lists them; an operation without
    a description or a request body leaves the field out. Every route takes the caller's id
    (CALLER_ID); ``parameters`` names any others before it."""
    fields = {
        "operationId": operation_id,
        "summary": summary,
        "description": description,
        "parameters": list(parameters),
        "requestBody": request_body,
        "responses": responses,
    }
    return {name: value for name, value in fields.items() if value is not None}


def segment(max_upload_mb: float) -> Schema:
    image = {"type": "string", "format": "binary"}
    return operation(
        "segment",
        "Segment one photo: the cat and dog pixels, in the form asked for",
        description="The image goes to TorchServe as it was uploaded. JPEG, PNG, WebP, BMP, "
        "GIF (first frame) and TIFF are read, EXIF orientation applied; the mask has the "
        "photo's own size.",
        parameters=(
            {
                "name": OUTPUT_FIELD,
                "in": "query",
                "description": "the answer's form: "
                + ", ".join(f"{name} ({media})" for name, media in OUTPUTS.items()),
                "schema": {"enum": list(OUTPUTS), "default": DEFAULT_OUTPUT},
            },
            {
                "name": TOLERANCE_FIELD,
                "in": "query",
                "description": "polygons: Douglas-Peucker simplification, in pixels (0 follows "
                "every pixel edge)",
                "schema": {"type": "number", "minimum": 0, "maximum": MAX_TOLERANCE, "default": 0},
            },
            VERSION_PARAMETER,
            CALLER_ID,
        ),
        request_body={
            "required": True,
            "description": f"multipart/form-data with the image in a file field named "
            f"{IMAGE_FIELDS[0]!r} ({', '.join(map(repr, IMAGE_FIELDS[1:]))} are read too, in "
            f"that order); up to {max_upload_mb:g} MB",
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {name: image for name in IMAGE_FIELDS},
                        "anyOf": [{"required": [name]} for name in IMAGE_FIELDS],
                    },
                    "encoding": {name: {"contentType": UPLOAD_TYPES} for name in IMAGE_FIELDS},
                }
            },
        },
        responses={
            "200": answer(
                "the segmentation, in the form ?output= asked for",
                {OUTPUTS[name]: {"schema": schema} for name, schema in OUTPUT_SCHEMAS.items()},
                **{
                    REQUEST_ID_HEADER: request_id(),
                    MODEL_VERSION_HEADER: header("the version of the model that answered"),
                },
            ),
            "400": error(
                "no image file in the upload, a bad ?output= or ?tolerance=, an empty, "
                "truncated or corrupt image, or one smaller than the model server accepts (8 "
                "pixels a side by default)"
            ),
            "413": error(
                f"an upload over {max_upload_mb:g} MB, or an image over the model server's "
                "pixel limit (25 megapixels by default)",
                from_app=False,  # the server's own past twice the limit
            ),
            "415": error("bytes that are no supported image"),
            "502": error("TorchServe failed in an unexpected way"),
            **shared("UnknownVersion", "TooSlow", "Internal", "Unavailable", "Timeout"),
        },
    )


def model_card() -> Schema:
    return operation(
        "model",
        "The model card of a version, and the versions TorchServe holds",
        parameters=(VERSION_PARAMETER, CALLER_ID),
        responses={
            "200": json_answer(
                "what the model is and was trained on, and how it scored", ref("ModelCard")
            ),
            **shared("UnknownVersion", "TooSlow", "Internal", "Unavailable", "Timeout"),
        },
    )


def health() -> Schema:
    return operation(
        "health",
        "Whether the model can serve: for readiness probes and balancers",
        responses={
            "200": json_answer(
                "TorchServe applied its serving state and the default version has a ready worker",
                ref("Health"),
            ),
            "503": json_answer(
                "not ready, with the reason (or the server's own refusal: too many connections)",
                {"anyOf": [ref("Health"), ref("Error")]},
                from_app=False,
            ),
            **shared("TooSlow", "Internal"),
        },
    )


def training() -> Schema:
    nullable_number: Schema = {"type": ["number", "null"]}
    point = obj({"epoch": COUNT, "loss": nullable_number, "val_miou": nullable_number})
    progress = obj(
        {
            "state": {"enum": list(TRAINING_STATES)},
            "detail": STRING,
            "epoch": COUNT,
            "epochs": {"type": ["integer", "null"], "minimum": 0},
            "loss": nullable_number,
            "val_miou": nullable_number,
            "seconds_left": {**nullable_number, "description": "null until an epoch is timed"},
            "history": {**array(point), "description": "one point per epoch done"},
        }
    )
    return operation(
        "training",
        "The training of the first model, while the page waits for it",
        description="`petseg run` starts the page at once and trains the demo model if there "
        "is none: training, exporting, starting (TorchServe), then ready, or failed with the "
        "reason in detail. Ready too where the app waits for no training.",
        responses={
            "200": json_answer(
                "the progress, as the trainer and `petseg run` last wrote it", progress
            ),
            **shared("TooSlow", "Internal", "Unavailable"),
        },
    )


def description() -> Schema:
    return operation(
        "openapi",
        "This description",
        responses={
            "200": json_answer("OpenAPI 3.1", {"type": "object"}),
            **shared("TooSlow", "Internal", "Unavailable"),
        },
    )


def document(max_upload_mb: float) -> Schema:
    """The description of the app's /api routes, for an app with this upload limit."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "petseg web API",
            "version": VERSION,
            "description": "Cats and dogs segmented by petseg's model in TorchServe, through "
            "its web proxy (docs/web-api.md). Every error is JSON with a "
            "code and a message.",
        },
        "paths": {
            "/api/segment": {"post": segment(max_upload_mb)},
            "/api/model": {"get": model_card()},
            "/api/health": {"get": health()},
            "/api/training": {"get": training()},
            "/api/openapi.json": {"get": description()},
        },
        "components": {"schemas": schemas(), "responses": responses()},
    }
