"""Everyday operations on a running TorchServe: the `petseg models|predict|key|rotate` commands.

Each takes the parsed arguments and a client, and prints what TorchServe answered: JSON as
indented JSON, images into the file named by ``-o``. Failures raise TorchServeError; the
command line turns them into one line and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import mimetypes
from pathlib import Path
from typing import Any

from handler.protocol import OUTPUTS
from torchserve_client import TorchServe, TorchServeError, error_message


def models(args: argparse.Namespace, client: TorchServe) -> Any:
    """list | describe [VERSION] | register ARCHIVE | scale N | set-default V | unregister V."""
    action = args.action
    if action == "list":
        return client.list_models()
    if action == "describe":
        return client.describe(args.version)
    if action == "register":
        return client.register(args.archive, args.workers)
    if action == "scale":
        return client.scale(args.workers, args.version)
    if action == "set-default":
        return client.set_default(args.version)
    return client.unregister(args.version)


def predict(args: argparse.Namespace, client: TorchServe) -> Any:
    """Segment one image; the answer goes to ``-o`` (needed for the image outputs) or stdout."""
    if OUTPUTS[args.output].startswith("image/") and not args.out:
        raise ValueError(f"--output {args.output} is an image: name a file with -o")
    image = Path(args.images[0])
    response = client.predict(image.read_bytes(), mimetypes.guess_type(image)[0], args.output)
    if response.status_code != 200:
        raise TorchServeError(
            f"HTTP {response.status_code}: {error_message(response)}",
            response.status_code,
        )
    if args.out:
        args.out.write_bytes(response.content)
        return f"wrote {len(response.content)} bytes ({OUTPUTS[args.output]}) to {args.out}"
    return response.json()


def key(args: argparse.Namespace, client: TorchServe) -> str:
    """print a key as the key file holds it now (e.g. for curl)"""
    return client.keys.key(args.kind)


def rotate(args: argparse.Namespace, client: TorchServe) -> str:
    """replace a key through the token API (the old one stops working at once)"""
    return client.rotate(args.kind)


def show(result: Any) -> None:
    print(result if isinstance(result, str) else json.dumps(result, indent=2))
