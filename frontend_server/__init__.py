"""The petseg web page and its API: a small Flask app in front of TorchServe.

create_app()  # settings: DEFAULTS < PETSEG_* environment variables < test_config

Flask reads the variables, each as JSON where it parses, else as the plain string
(docs/web-api.md); one of another type than its default stops the start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask

from frontend_server import api, errors, observe, pages, security
from frontend_server.metrics import ProxyMetrics
from frontend_server.rollout import Trial
from frontend_server.upstream import client_from_config
from handler.protocol import KEY_FILE_NAME, MODEL_NAME, Ports

DEFAULTS: dict[str, Any] = {
    "TORCHSERVE_INFERENCE_URL": f"http://127.0.0.1:{Ports.inference}",
    "TORCHSERVE_MANAGEMENT_URL": f"http://127.0.0.1:{Ports.management}",
    "MODEL_NAME": MODEL_NAME,
    "KEY_FILE": f"logs/torchserve/{KEY_FILE_NAME}",
    "MAX_UPLOAD_MB": 20,
    "TIMEOUT_S": 60.0,
    # host:port of the operators' listener (GET /metrics, GET /status; frontend_server.operator),
    # never the public one; empty: none. `petseg run` uses 127.0.0.1:5001 unless this is set.
    "METRICS_ADDRESS": "",
    # The progress file of a training this app waits for (model_training.progress; `petseg run`
    # names the demo model's): GET /api/training reads it. Empty: no training to wait for.
    "PROGRESS_FILE": "",
}
ENV_PREFIX = "PETSEG"


def check_types(config: dict[str, Any]) -> None:
    """Each setting of ``DEFAULTS`` has its default's type (any number for a number): the
    error names the PETSEG_* variable that gave another."""
    for name, default in DEFAULTS.items():
        value, number = config[name], type(default) in (int, float)
        if not (type(value) in (int, float) if number else isinstance(value, type(default))):
            kind = "number" if number else type(default).__name__
            quote = "" if number else ", so quote a string that reads as another type: '\"7\"'"
            raise ValueError(
                f"{ENV_PREFIX}_{name} gave {value!r}, not a {kind} like the default "
                f"{default!r}: values are read as JSON{quote}"
            )


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(DEFAULTS)
    app.config.from_prefixed_env(ENV_PREFIX)
    check_types(app.config)
    app.config.update(test_config or {})
    # Flask answers 413 for bodies over this (wsgi.py caps what the server itself spools).
    # A little slack over the file limit for the multipart envelope.
    app.config["MAX_CONTENT_LENGTH"] = int(app.config["MAX_UPLOAD_MB"] * 1024 * 1024) + 64 * 1024
    metrics = ProxyMetrics()
    client = client_from_config(app.config, on_renewal=metrics.token_renewed)
    metrics.watch_torchserve(client.health)
    app.extensions["torchserve"] = client
    app.extensions["metrics"] = metrics
    app.extensions["trial"] = Trial(Path(app.config["KEY_FILE"]).parent, client, metrics.registry)
    observe.register(app)
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    errors.register(app)
    security.register(app)
    return app
