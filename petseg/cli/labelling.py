"""`petseg label-studio serve|config`: petseg as a Label Studio ML backend (petseg.labelling).

    petseg label-studio config [--polygons] > config.xml   a project's labelling config
    LABEL_STUDIO_API_KEY=... PETSEG_ML_BACKEND_PASSWORD=... \\
    petseg label-studio serve --label-studio-url http://127.0.0.1:8080 [--port 9090]

The secrets come from the environment, never the command line (which `ps` shows everyone).
"""

from __future__ import annotations

import argparse
import os

from petseg.bulk.targets import Direct, Target, WebApi
from petseg.serving import launcher

TOKEN_VARIABLE = "LABEL_STUDIO_API_KEY"
"""Label Studio's own name for it (its SDK reads the same variable)."""
PASSWORD_VARIABLE = "PETSEG_ML_BACKEND_PASSWORD"
DEFAULT_PORT = 9090
"""The port Label Studio's ML backends listen on by convention."""


def add_commands(commands: argparse._SubParsersAction) -> None:
    studio = commands.add_parser("label-studio", help="pre-annotations for Label Studio")
    actions = studio.add_subparsers(dest="action", required=True)
    target = argparse.ArgumentParser(add_help=False)
    target.add_argument(
        "--url", help="the web API (or a balancer) instead of --workdir's TorchServe"
    )
    target.add_argument("--version", help="this model version (TorchServe direct only)")
    target.add_argument("--timeout", type=float, default=120, help="seconds per photo")
    config = actions.add_parser("config", parents=[target], help="print a labelling config")
    config.add_argument("--polygons", action="store_true", help="PolygonLabels, not BrushLabels")
    config.set_defaults(func=print_config)
    serve = actions.add_parser("serve", parents=[target], help="run the ML backend")
    serve.add_argument("--label-studio-url", required=True, help="where task images are fetched")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    serve.add_argument("--user", default="label-studio", help="the basic-auth user it admits")
    serve.add_argument(
        "--tolerance", type=float, default=1.0, help="polygon projects: outline tolerance, px"
    )
    serve.set_defaults(func=serve_backend)


def target_of(args: argparse.Namespace, instance: launcher.Instance) -> Target:
    if args.url:
        if args.version:
            raise ValueError("--version is for TorchServe direct; the web API serves its default")
        return WebApi(args.url, args.timeout)
    return Direct(instance.client(timeout=args.timeout), args.version)


def print_config(args: argparse.Namespace, instance: launcher.Instance) -> int:
    from petseg.labelling.label_config import template

    card = target_of(args, instance).model_card()
    print(template(card["classes"], "polygon" if args.polygons else "brush"), end="")
    return 0


def serve_backend(args: argparse.Namespace, instance: launcher.Instance) -> int:
    import waitress

    from frontend_server import DEFAULTS
    from petseg.labelling.backend import Credential, create_backend
    from petseg.labelling.prelabel import Prelabeller
    from petseg.labelling.task_images import LabelStudio

    token, password = os.environ.get(TOKEN_VARIABLE), os.environ.get(PASSWORD_VARIABLE)
    if not token or not password:
        raise ValueError(
            f"set {TOKEN_VARIABLE} (a Label Studio API token that may read the tasks) and "
            f"{PASSWORD_VARIABLE} (the password Label Studio will send, user {args.user!r})"
        )
    target = target_of(args, instance)
    max_bytes = int(DEFAULTS["MAX_UPLOAD_MB"] * 2**20)  # the web API's upload limit
    label_studio = LabelStudio(args.label_studio_url, token, max_bytes, args.timeout)
    app = create_backend(
        target, label_studio, Credential(args.user, password), Prelabeller(target, args.tolerance)
    )
    print(f"petseg ML backend for {args.label_studio_url} on http://{args.host}:{args.port}")
    waitress.serve(app, host=args.host, port=args.port, threads=16, ident="petseg")
    return 0
