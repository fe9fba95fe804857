"""Everyday TorchServe operations for petseg, with the tokens read from the key file.

python -m handler.manage list | describe [VERSION]
python -m handler.manage register petseg-v2.mar [--workers 1]
python -m handler.manage set-default 2.0 | scale 2 [--version 2.0] | unregister 2.0
python -m handler.manage predict cat.jpg [--output mask -o mask.png]
python -m handler.manage key inference        # print a key, e.g. for curl
python -m handler.manage rotate inference     # new key via the token API (API key)
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from pathlib import Path

from handler.server import DEFAULT_STORE, DEFAULT_WORKDIR, MODEL_NAME, Instance, request

ACCEPT = {"json": "application/json", "mask": "image/png", "overlay": "image/jpeg"}


def management(instance: Instance, method: str, path: str, **params: object) -> tuple[int, bytes]:
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    url = instance.url("management", path + (f"?{query}" if query else ""))
    return request(url, instance.keys()["management"], method=method, timeout=300)


def predict(instance: Instance, image: Path, output: str) -> tuple[int, bytes]:
    url = instance.url("inference", f"/predictions/{MODEL_NAME}")
    # urllib's default content type, form-urlencoded, makes TorchServe answer 500.
    headers = {"Accept": ACCEPT[output], "Content-Type": "application/octet-stream"}
    return request(url, instance.keys()["inference"], "POST", 120, image.read_bytes(), headers)


def run(args: argparse.Namespace, instance: Instance) -> tuple[int, bytes]:
    """Dispatch one command; returns TorchServe's (status, body)."""
    model = f"/models/{MODEL_NAME}"
    version = f"/{args.version}" if getattr(args, "version", None) else ""
    if args.command == "list":
        return management(instance, "GET", "/models")
    if args.command == "describe":
        return management(instance, "GET", f"{model}{version or '/all'}")
    if args.command == "register":
        return management(
            instance,
            "POST",
            "/models",
            url=args.archive,
            model_name=MODEL_NAME,
            initial_workers=args.workers,
            synchronous="true",
        )
    if args.command == "set-default":
        return management(instance, "PUT", f"{model}{version}/set-default")
    if args.command == "scale":
        return management(
            instance,
            "PUT",
            f"{model}{version}",
            min_worker=args.workers,
            max_worker=max(args.workers, 1),
            synchronous="true",
        )
    if args.command == "unregister":
        return management(instance, "DELETE", f"{model}{version}")
    if args.command == "predict":
        return predict(instance, args.image, args.output)
    if args.command == "key":
        return 200, instance.keys()[args.kind].encode()
    url = instance.url("management", f"/token?type={args.kind}")  # rotate
    return request(url, instance.keys()["API"])


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workdir",
        type=Path,
        default=DEFAULT_WORKDIR,
        help="where TorchServe was started (holds key_file.json)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list")
    commands.add_parser("describe").add_argument("version", nargs="?")
    register = commands.add_parser("register", help="an archive file name in the model store")
    register.add_argument("archive")
    register.add_argument("--workers", type=int, default=1)
    commands.add_parser("set-default").add_argument("version")
    scale = commands.add_parser("scale")
    scale.add_argument("workers", type=int)
    scale.add_argument("--version")
    commands.add_parser("unregister").add_argument("version")
    predict_cmd = commands.add_parser("predict")
    predict_cmd.add_argument("image", type=Path)
    predict_cmd.add_argument("--output", choices=list(ACCEPT), default="json")
    predict_cmd.add_argument("-o", "--out", type=Path, help="write the answer here")
    for name in ("key", "rotate"):
        commands.add_parser(name).add_argument("kind", choices=["inference", "management"])
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    instance = Instance(args.workdir, DEFAULT_STORE)
    if not instance.key_file.is_file():
        print(
            f"error: no {instance.key_file}: is TorchServe running (make serve)?", file=sys.stderr
        )
        return 2
    status, body = run(args, instance)
    if getattr(args, "out", None):
        args.out.write_bytes(body)
        print(f"HTTP {status}: wrote {len(body)} bytes to {args.out}")
    else:
        try:
            print(json.dumps(json.loads(body), indent=2))
        except ValueError:
            print(body.decode(errors="replace"))
    return 0 if status < 400 else 1


if __name__ == "__main__":
    sys.exit(main())
