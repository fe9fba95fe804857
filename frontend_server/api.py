"""The JSON API the page calls: POST /api/segment (proxied to TorchServe) and GET /api/health.

Only these two routes reach TorchServe, and only its inference endpoint for the configured model:
the client builds every TorchServe URL itself, so nothing a client sends can address management,
metrics or another model.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from frontend_server import upstream
from frontend_server.errors import error_response
from handler.protocol import DEFAULT_OUTPUT, IMAGE_FIELDS, OUTPUT_FIELD, OUTPUTS, TOLERANCE_FIELD
from torchserve_client import TorchServe

bp = Blueprint("api", __name__, url_prefix="/api")


def _client() -> TorchServe:
    return current_app.extensions["torchserve"]


@bp.post("/segment")
def segment() -> Response:
    """Forward one uploaded image; the answer (JSON, or ?output=mask|overlay|rle|polygons, with
    ?tolerance=PIXELS for polygons) comes back as is."""
    upload = next((request.files[f] for f in IMAGE_FIELDS if f in request.files), None)
    if upload is None:
        return error_response(
            400,
            "no image file in the upload: send multipart/form-data with the image in a field "
            f"named {IMAGE_FIELDS[0]!r}",
        )
    output = request.args.get(OUTPUT_FIELD, DEFAULT_OUTPUT)
    if output not in OUTPUTS:
        return error_response(400, f"output={output!r}: use one of {', '.join(OUTPUTS)}")
    tolerance = request.args.get(TOLERANCE_FIELD)
    answer = upstream.segment(_client(), upload.stream, upload.mimetype or "", output, tolerance)
    return Response(answer.body, status=answer.status, content_type=answer.content_type)


@bp.get("/health")
def health() -> Response:
    """200 when the model has a ready worker, else 503 with the reason."""
    status = _client().health()
    response = jsonify(status.as_dict())
    response.status_code = 200 if status.ready_workers else 503
    return response
