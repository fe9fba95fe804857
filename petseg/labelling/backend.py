"""petseg as a Label Studio ML backend: a project connected to it by URL gets pre-annotations.

    GET  /health    Label Studio's check when the backend is added (no credential needed)
    POST /setup     the project's labelling config: is it one petseg can fill? -> model_version
    POST /predict   {"tasks": [...], "label_config": ...} -> {"results": [one per task]}
    POST /webhook   Label Studio's events (annotations created, training asked): acknowledged

Everything but /health needs the backend's own credential, HTTP basic auth, which Label Studio
sends when the backend is added with "Basic Authentication". The tasks of one /predict are
segmented concurrently, so TorchServe batches them; a task that cannot be labelled (no image,
an image Label Studio does not serve, not an image) gets an empty prediction and its error, and
the other tasks of the request still get theirs. The request itself fails only when no task can
be labelled: a malformed body (400), a config without the model's classes (422), the model server
down (503). Every error is JSON: {"error": "..."}.

It runs on its own (`petseg label-studio serve`), not in the web app: it holds a Label Studio API
token, decodes masks (numpy, Pillow, label-studio-sdk, none of which the web image carries) and
answers annotators, not the public.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from petseg.bulk.targets import Target
from petseg.labelling import label_config
from petseg.labelling.prelabel import Prelabeller
from petseg.labelling.task_images import LabelStudio, TaskError
from torchserve_client import TorchServeError, Unreachable

log = logging.getLogger("petseg.label_studio")

MAX_BODY_BYTES = 16 * 2**20
"""A /predict body lists tasks (their URLs, not their images): 16 MB is tens of thousands."""
MAX_TASKS = 1000
CONCURRENCY = 8
"""Photos in flight at once: TorchServe's batch size is 8 by default (config/model-config.yaml)."""
UNOPENED_PATHS = frozenset({"/health"})


@dataclass(frozen=True)
class Credential:
    """The user and password Label Studio must send (HTTP basic auth)."""

    user: str
    password: str

    def admits(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        matches = hmac.compare_digest(user.encode(), self.user.encode())
        return hmac.compare_digest(password.encode(), self.password.encode()) and matches


class BadRequest(ValueError):
    """The request cannot be answered at all; ``status`` says why (400 malformed, 422 unusable)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def create_backend(
    target: Target,
    label_studio: LabelStudio,
    credential: Credential,
    prelabeller: Prelabeller | None = None,
) -> Flask:
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    prelabeller = prelabeller or Prelabeller(target)
    pool = ThreadPoolExecutor(CONCURRENCY, thread_name_prefix="prelabel")

    def model_card() -> dict[str, Any]:
        try:
            return target.model_card()
        except (TorchServeError, Unreachable) as exc:
            raise BadRequest(f"the model server is not answering: {exc}", 503) from exc

    @app.before_request
    def authenticate() -> Any:
        if request.path in UNOPENED_PATHS:
            return None
        if credential.admits(request.headers.get("Authorization")):
            return None
        answer = jsonify(error="this ML backend needs its basic-auth user and password")
        return answer, 401, {"WWW-Authenticate": 'Basic realm="petseg"'}

    @app.get("/health")
    def health() -> Any:
        card = model_card()
        return jsonify(status="UP", model_class="petseg", model_version=card["version"])

    @app.post("/setup")
    def setup() -> Any:
        body = json_body()
        card = model_card()
        label_config.read(body.get("schema"), card["classes"])
        return jsonify(model_version=card["version"])

    @app.post("/predict")
    def predict() -> Any:
        body = json_body()
        tasks = body.get("tasks")
        if not isinstance(tasks, list) or not tasks:
            raise BadRequest("'tasks' must be a non-empty list of Label Studio tasks")
        if len(tasks) > MAX_TASKS:
            raise BadRequest(f"{len(tasks)} tasks in one request; at most {MAX_TASKS}", 413)
        card = model_card()
        project = label_config.read(body.get("label_config"), card["classes"])

        def one(task: Any) -> dict[str, Any]:
            return predict_task(task, project, card["version"])

        return jsonify(results=list(pool.map(one, tasks)))

    def predict_task(task: Any, project: label_config.Project, version: str) -> dict[str, Any]:
        """The task's prediction, or an empty one carrying why there is none."""
        name = f"task {task.get('id', '?')}" if isinstance(task, dict) else "a task"
        try:
            data = task.get("data") if isinstance(task, dict) else None
            if not isinstance(data, dict) or project.image_key not in data:
                raise TaskError(f"its data has no {project.image_key!r} field")
            photo = label_studio.image(data[project.image_key])
            return prelabeller.predict(photo, project)
        except (ValueError, KeyError, OSError) as exc:  # TaskError, or an answer not as promised
            log.warning("%s: %s", name, exc)
            return {"result": [], "score": 0.0, "model_version": version, "error": f"{name}: {exc}"}

    @app.post("/webhook")
    def webhook() -> Any:
        body = json_body()
        action = body.get("action")
        if not isinstance(action, str):
            raise BadRequest("a webhook names its 'action'")
        log.info("Label Studio event %s", action)
        note = "petseg trains with `petseg train --data EXPORT`" if "TRAIN" in action else None
        return jsonify(status="ok", action=action, note=note)

    def json_body() -> dict[str, Any]:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object (Content-Type: application/json)")
        return body

    @app.errorhandler(BadRequest)
    def refused(exc: BadRequest) -> Any:
        return jsonify(error=str(exc)), exc.status

    @app.errorhandler(label_config.LabelConfigError)
    def unusable(exc: label_config.LabelConfigError) -> Any:
        return jsonify(error=str(exc)), 422

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        return jsonify(error=exc.description), exc.code

    return app
