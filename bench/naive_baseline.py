"""BASELINE ONLY, not how petseg is served: the naive way to put the model behind HTTP.

    python -m bench.naive_baseline --export-dir exported/petseg --port 8090

One process answers one request at a time (http.server): decode, one fp32 eager forward pass
for that image alone with every core given to torch, encode, reply. No batching, no worker
processes, no mixed precision; this is how the original demo app served the model. It shares
petseg's decoding and rendering code, so a comparison with it measures the serving design, not
different image code. `make bench` starts it on a free port and measures it beside TorchServe.
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import torch

from handler.decoding import InputError, Photo, decode_photo
from handler.imaging import letterbox_image
from handler.model import load_exported, photo_labels
from handler.rendering import b64, class_stats, encode, mask_png, paint_overlay
from handler.settings import HandlerConfig


class NaiveSegmenter:
    def __init__(self, export_dir: Path, device: str = "cpu") -> None:
        self.model, self.spec = load_exported(export_dir, device)
        self.device = torch.device(device)
        self.config = HandlerConfig()

    def labels(self, data: bytes) -> tuple[Photo, np.ndarray, list[dict[str, object]]]:
        """The decoded photo, its class ids (the benchmark's fp32 reference masks) and the
        classes found."""
        config = self.config
        photo = decode_photo(
            data, config.max_image_pixels, config.min_image_side, config.overlay_max_side
        )
        pixels, box = letterbox_image(
            photo.image, self.spec.input_size, self.spec.mean, self.spec.std
        )
        with torch.inference_mode():
            logits = self.model(torch.from_numpy(pixels)[None].to(self.device))[0]
        labels, regions = photo_labels(logits, box, photo.height, photo.width)
        return photo, labels, class_stats(regions, self.spec.class_names, labels.size)

    def __call__(self, data: bytes) -> dict:
        photo, labels, found = self.labels(data)
        alpha = self.config.overlay_alpha
        overlay = paint_overlay(photo.image, labels, self.spec.palette, alpha, found)
        return {
            "width": photo.width,
            "height": photo.height,
            "mask_png": b64(mask_png(labels, self.spec.palette)),
            "overlay_jpeg": b64(encode(overlay, "jpeg", self.config.jpeg_quality)),
        }


def make_handler(segment: NaiveSegmenter) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                status, body = 200, segment(data)
            except InputError as exc:
                status, body = exc.status, {"code": exc.status, "message": exc.message}
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
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
