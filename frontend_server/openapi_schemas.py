"""The bodies the web API sends, as JSON Schema: the OpenAPI description's components/schemas
(frontend_server.openapi puts them in its document), and the few builders they are written with.

Each shape follows what writes that body, named in ``schemas()``; the media types, the tolerance's
range and the request-id header come from handler.protocol, so none of them is written twice.
"""

from __future__ import annotations

from typing import Any

from handler.protocol import MAX_TOLERANCE, OUTPUTS, REQUEST_ID_HEADER

Schema = dict[str, Any]


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
        "Labels": obj(
            {
                **frame,
                "masks": array(ref("RleMask")),
                "mask_png": mask_png,
                "confidence": {
                    **FRACTION,
                    "description": "the mean over pixels of the largest class probability",
                },
            }
        ),
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
