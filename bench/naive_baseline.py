"""BASELINE ONLY, not how petseg is served: the naive way to put the model behind HTTP.

    python -m bench.naive_baseline --export-dir exported/petseg --port 8090

One process answers one request at a time (http.server): decode, one fp32 eager forward pass
for that image alone with every core given to torch, encode, reply. No batching, no worker
processes, no mixed precision; this is how the original demo app served the model. It runs
petseg's own pipeline (handler/pipeline.py) with the plain model as its forward pass, so a
comparison with it measures the serving design, not different image code. `make bench` starts
it on a free port and measures it beside TorchServe.
"""

from __future__ import annotations

import argparse
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import torch

from handler.batch import Item
from handler.model import load_exported
from handler.payload import Request
from handler.pipeline import Answer, Pipeline


class NaiveSegmenter:
    """petseg's pipeline with the plain eager fp32 model as its forward pass, one photo at a
    time: none of handler/runtime.py's machinery."""

    def __init__(self, export_dir: Path, device: str = "cpu") -> None:
        self.model, self.spec = load_exported(export_dir, device)
        self.device = torch.device(device)
        self.pipeline = Pipeline(self.spec, self._forward, "float32", self.spec.version)

    def _forward(self, pixels: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(pixels.to(self.device)).float()

    def __call__(self, data: bytes) -> Answer:
        return self.pipeline.run([Request(data, "json")])[0]

    def labels(self, data: bytes) -> np.ndarray:
        """The photo's class ids: the benchmark's fp32 reference masks."""
        item = Item(request=Request(data, "mask"))
        pipeline = self.pipeline
        pipeline.answer(pipeline.infer(pipeline.prepare([item])))
        if item.error is not None:
            raise item.error
        return item.labels


def make_handler(segment: NaiveSegmenter) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            answer = segment(data)
            payload = answer.body.encode()
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.media_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass  # one line per request would cost more than some requests

    return Handler


class QueueingHTTPServer(HTTPServer):
    request_queue_size = 128
    """http.server's backlog of 5 resets the 6th waiting client: that would measure the kernel
    refusing connections, not the one-at-a-time design."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export-dir", type=Path, default=Path("exported/petseg"))
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    segmenter = NaiveSegmenter(args.export_dir, args.device)
    server = QueueingHTTPServer(("127.0.0.1", args.port), make_handler(segmenter))
    print(f"naive baseline server on http://127.0.0.1:{args.port}/", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
