"""The web API's OpenAPI 3.1 description, served at GET /api/openapi.json.

Built from the names and values the code itself uses (handler.protocol: the outputs and their
media types, the image fields, the tolerance's range, the headers; the app's upload limit), so
none of them is written twice. tests/unit/test_openapi.py holds the description to the app (every
/api route described, nothing else) and to the OpenAPI 3.1 schema; tests/integration/
test_openapi.py runs schemathesis with it against the proxy in front of a real TorchServe, and
fails on any answer it does not describe: a status, a media type, a header or a JSON field.
"""

from __future__ import annotations

from typing import Any

from frontend_server.errors import RETRY_AFTER_S
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

Schema = dict[str, Any]

VERSION = "1.1.0"
"""This description's version (``info.version``): raise it when the API changes."""
JSON = "application/json"
UPLOAD_TYPES = "image/*, application/octet-stream"
"""What an image part may be labelled: the handler reads the bytes, whatever the label says."""


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: dict[str, Schema], optional: dict[str, Schema] | None = None) -> Schema:
    """A closed JSON object: a field the description does not name fails schemathesis' check,
    so the description cannot fall behind what the handler and the proxy send."""
    return {
        "type": "object",
        "properties": {**required, **(optional or {})},
        "required": list(required),
        "additionalProperties": False,
    }


def array(items: Schema, length: int | None = None) -> Schema:
    schema: Schema = {"type": "array", "items": items}
    if length is not None:
        schema.update(minItems=length, maxItems=length)
    return schema


STRING: Schema = {"type": "string"}
INTEGER: Schema = {"type": "integer"}
COUNT: Schema = {"type": "integer", "minimum": 0}
FRACTION: Schema = {"type": "number", "minimum": 0, "maximum": 1}
SCORES: Schema = {"type": "object", "additionalProperties": {"type": ["number", "null"]}}


def schemas() -> dict[str, Schema]:
    """The bodies' shapes, as the handler (handler/petseg_handler.py, rendering.py,
    model_card.py), the proxy (errors.py, upstream.py) and waitress (wsgi.py) write them."""
    found = {
        "id": INTEGER,
        "name": STRING,
        "fraction": FRACTION,
        "bbox": {**array(COUNT, 4), "description": "[x0, y0, x1, y1], x1 and y1 exclusive"},
    }
    frame = {"model": ref("ModelBlock"), "width": COUNT, "height": COUNT}
    mask_png = {
        **STRING,
        "contentEncoding": "base64",
        "contentMediaType": OUTPUTS["mask"],
        "description": "palette PNG: pixel values are class ids",
    }
    return {
        "Error": obj(
            {"code": INTEGER, "message": STRING},
            {
                "type": {**STRING, "description": "the model server's kind of error: InputError"},
                "request_id": {
                    **STRING,
                    "description": f"as in the {REQUEST_ID_HEADER} header; absent from the "
                    "server's own refusals, made before the app runs",
                },
            },
        ),
        "Color": array({"type": "integer", "minimum": 0, "maximum": 255}, 3),
        "Class": obj({"id": INTEGER, "name": STRING, "color": ref("Color")}),
        "Found": obj(found),
        "ModelBlock": obj(
            {
                "name": STRING,
                "version": STRING,
                "precision": {**STRING, "examples": ["float32", "bfloat16", "float16"]},
                "training_data": {
                    **STRING,
                    "examples": ["synthetic", "oxford-iiit-pet", "kaggle-oxford-iiit-pet"],
                },
            }
        ),
        "Segmentation": obj(
            {
                **frame,
                "classes": array(ref("Class")),
                "found": {**array(ref("Found")), "description": "every class found but background"},
                "foreground_fraction": FRACTION,
                "mask_png": mask_png,
                "overlay_jpeg": {
                    **STRING,
                    "contentEncoding": "base64",
                    "contentMediaType": OUTPUTS["overlay"],
                },
                "batch_size": {"type": "integer", "minimum": 1},
                "timings_ms": obj(
                    {
                        step: {"type": "number"}
                        for step in ("preprocess", "inference", "postprocess")
                    }
                ),
            }
        ),
        "RleMasks": obj(
            {
                **frame,
                "masks": array(ref("RleMask")),
            }
        ),
        "Labels": obj({**frame, "masks": array(ref("RleMask")), "mask_png": mask_png}),
        "RleMask": obj(
            {
                **found,
                "area": COUNT,
                "rle": obj(
                    {
                        "size": {**array(COUNT, 2), "description": "[height, width]"},
                        "counts": {**STRING, "description": "COCO compressed counts, column-major"},
                    }
                ),
            }
        ),
        "Polygons": obj(
            {
                "type": {"const": "FeatureCollection"},
                "features": array(
                    obj(
                        {
                            "type": {"const": "Feature"},
                            "properties": obj({**found, "color": ref("Color")}),
                            "geometry": obj(
                                {
                                    "type": {"const": "MultiPolygon"},
                                    "coordinates": {
                                        **array(array(array(array({"type": "number"}, 2)))),
                                        "description": "per region an outer ring, then its "
                                        "holes; closed rings of [x, y] pixel corners",
                                    },
                                }
                            ),
                        }
                    )
                ),
                **frame,
                "tolerance": {"type": "number", "minimum": 0, "maximum": MAX_TOLERANCE},
            }
        ),
        "ModelCard": obj(
            {
                "name": STRING,
                "version": STRING,
                "architecture": STRING,
                "classes": array(ref("Class")),
                "input_size": {"type": "integer", "minimum": 1},
                "precision": STRING,
                "training_data": {
                    "type": "object",
                    "properties": {"kind": STRING},
                    "required": ["kind"],
                    "description": "kind, and what the model spec says: name, images, "
                    "epochs_trained, encoder_weights, border",
                },
                "evaluation": {
                    "type": "object",
                    "properties": {
                        "split": {"type": ["string", "null"]},
                        "images": {"type": ["integer", "null"]},
                        "dataset": SCORES,
                        "per_image": SCORES,
                    },
                    "description": "the evaluation's headline scores; empty if none was run",
                },
                "default_version": STRING,
                "versions": array(STRING),
            }
        ),
        "Health": obj(
            {
                "torchserve": {"enum": ["up", "down"]},
                "ready_workers": COUNT,
                "workers": COUNT,
                "detail": STRING,
                "serving_state": {"enum": ["applied", "not applied yet"]},
                "problems": {
                    **array(STRING),
                    "description": "what TorchServe could not serve of its declared state",
                },
            }
        ),
    }


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


def error(description: str, *, from_app: bool = True, **headers: Schema) -> Schema:
    """A JSON error; ``from_app``: the app wrote it (with the request's id), not the server."""
    return answer(
        description,
        {JSON: {"schema": ref("Error")}},
        **{REQUEST_ID_HEADER: request_id(required=from_app), **headers},
    )


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


def segment(max_upload_mb: float) -> Schema:
    image = {"type": "string", "format": "binary"}
    return {
        "operationId": "segment",
        "summary": "Segment one photo: the cat and dog pixels, in the form asked for",
        "description": "The image goes to TorchServe as it was uploaded. JPEG, PNG, WebP, BMP, "
        "GIF (first frame) and TIFF are read, EXIF orientation applied; the mask has the "
        "photo's own size.",
        "parameters": [
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
        ],
        "requestBody": {
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
        "responses": {
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
    }


def model_card() -> Schema:
    return {
        "operationId": "model",
        "summary": "The model card of a version, and the versions TorchServe holds",
        "parameters": [VERSION_PARAMETER, CALLER_ID],
        "responses": {
            "200": answer(
                "what the model is and was trained on, and how it scored",
                {JSON: {"schema": ref("ModelCard")}},
                **{REQUEST_ID_HEADER: request_id()},
            ),
            **shared("UnknownVersion", "TooSlow", "Internal", "Unavailable", "Timeout"),
        },
    }


def health() -> Schema:
    return {
        "operationId": "health",
        "summary": "Whether the model can serve: for readiness probes and balancers",
        "parameters": [CALLER_ID],
        "responses": {
            "200": answer(
                "TorchServe applied its serving state and the default version has a ready worker",
                {JSON: {"schema": ref("Health")}},
                **{REQUEST_ID_HEADER: request_id()},
            ),
            "503": answer(
                "not ready, with the reason (or the server's own refusal: too many connections)",
                {JSON: {"schema": {"anyOf": [ref("Health"), ref("Error")]}}},
                **{REQUEST_ID_HEADER: request_id(required=False)},
            ),
            **shared("TooSlow", "Internal"),
        },
    }


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
    return {
        "operationId": "training",
        "summary": "The training of the first model, while the page waits for it",
        "description": "`petseg run` starts the page at once and trains the demo model if there "
        "is none: training, exporting, starting (TorchServe), then ready, or failed with the "
        "reason in detail. Ready too where the app waits for no training.",
        "parameters": [CALLER_ID],
        "responses": {
            "200": answer(
                "the progress, as the trainer and `petseg run` last wrote it",
                {JSON: {"schema": progress}},
                **{REQUEST_ID_HEADER: request_id()},
            ),
            **shared("TooSlow", "Internal", "Unavailable"),
        },
    }


def description() -> Schema:
    return {
        "operationId": "openapi",
        "summary": "This description",
        "parameters": [CALLER_ID],
        "responses": {
            "200": answer(
                "OpenAPI 3.1",
                {JSON: {"schema": {"type": "object"}}},
                **{REQUEST_ID_HEADER: request_id()},
            ),
            **shared("TooSlow", "Internal", "Unavailable"),
        },
    }


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
