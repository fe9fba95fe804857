"""The JSON API the page calls: POST /api/segment (proxied to TorchServe), GET /api/model (the
model card), GET /api/health and GET /api/training (the first model's training, while the page
waits for it); GET /api/openapi.json describes them (frontend_server.openapi).

The client builds every TorchServe URL itself, for the configured model only: nothing a client
sends can address management or metrics, another model, or a version TorchServe does not hold.
"""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Callable
from pathlib import Path

from flask import Blueprint, Response, current_app, g, jsonify, request

from frontend_server import openapi, upstream
from frontend_server.errors import error_response
from frontend_server.rollout import Answered, Trial
from handler.protocol import (
    DEFAULT_OUTPUT,
    IMAGE_FIELDS,
    MODEL_VERSION_HEADER,
    OUTPUT_FIELD,
    OUTPUTS,
    TOLERANCE_FIELD,
    parse_tolerance,
)
from model_training.progress import EMPTY, read_progress
from torchserve_client import TorchServe
from torchserve_client.rollout import Rollout

bp = Blueprint("api", __name__, url_prefix="/api")


def _client() -> TorchServe:
    return current_app.extensions["torchserve"]


@bp.post("/segment")
def segment() -> Response:
    """Forward one uploaded image to the default version (or ?version=); the answer (JSON, or
    ?output=mask|overlay|rle|polygons|labels, with ?tolerance=PIXELS for polygons) comes back as
    is."""
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
    typed = request.args.get(TOLERANCE_FIELD)
    try:
        tolerance = None if typed is None else parse_tolerance(typed)  # sent on as a number
    except ValueError as exc:
        return error_response(400, str(exc))
    content_type = upload.mimetype or ""
    forward = functools.partial(
        upstream.segment,
        _client(),
        content_type=content_type,
        output=output,
        tolerance=tolerance,
        request_id=g.request_id,
        timer=current_app.extensions["metrics"].upstream_call,
    )
    version = request.args.get("version")
    trial: Trial = current_app.extensions["trial"]
    rollout = trial.pick() if version is None else None
    if rollout is None:
        answer = forward(upload.stream, version=version)
    else:
        answer = on_trial(trial, rollout, upload.read(), content_type, output, forward)
    g.model_version, g.torchserve_id = answer.model_version, answer.torchserve_id
    response = Response(answer.body, status=answer.status, content_type=answer.content_type)
    if answer.model_version:  # which version answered, whatever the output (a canary's too)
        response.headers[MODEL_VERSION_HEADER] = answer.model_version
    return response


def on_trial(
    trial: Trial,
    rollout: Rollout,
    image: bytes,
    content_type: str,
    output: str,
    forward: Callable[..., upstream.Answer],
) -> upstream.Answer:
    """An upload the rollout picked. Canary: the candidate answers; should it fail, the
    default does (the failure is the guard's to count, not the user's to see). Shadow: the
    default answers, then both versions are compared in the background (on the masks of the
    user's answer where it holds them)."""
    if rollout.mode == "canary":
        try:
            answer = forward(io.BytesIO(image), version=rollout.version, declared_version=True)
            trial.candidate_answered(rollout, True)
            return answer
        except upstream.UpstreamError:
            trial.candidate_answered(rollout, False)
    answer = forward(io.BytesIO(image), version=None)
    if rollout.mode == "shadow" and answer.status == 200:
        answered = Answered(output, answer.body, answer.model_version)
        trial.shadow(rollout, image, content_type, answered)
    return answer


@bp.get("/model")
def model() -> Response:
    """The model card of the default version (or ?version=), and the versions TorchServe holds:
    only these fields, never TorchServe's own description (workers, paths)."""
    return jsonify(upstream.model_info(_client(), request.args.get("version")))


@bp.get("/health")
def health() -> Response:
    """200 once TorchServe applied the serving state and the default version has a ready
    worker (what it could not serve is listed either way), else 503 with the reason. Why
    TorchServe cannot be reached (its address, the key file's path) goes to this server's log,
    not to the public."""
    status = _client().health()
    body = status.as_dict()
    if not status.reachable:
        current_app.logger.warning("health: %s", status.detail)
        body["detail"] = "TorchServe is not reachable"
    response = jsonify(body)
    response.status_code = 200 if status.ready else 503
    return response


@bp.get("/training")
def training() -> Response:
    """The progress of the training this app waits for, as its progress file says; ``ready``
    when the app waits for none (TorchServe's own readiness is GET /api/health's)."""
    path = current_app.config["PROGRESS_FILE"]
    return jsonify(read_progress(Path(path)) if path else {**EMPTY, "state": "ready"})


@bp.get("/openapi.json")
def openapi_document() -> Response:
    """The OpenAPI 3.1 description of these routes, in the order it is written (jsonify would
    sort its keys), with this app's upload limit."""
    document = openapi.document(current_app.config["MAX_UPLOAD_MB"])
    return Response(json.dumps(document), mimetype="application/json")
