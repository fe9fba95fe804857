"""A faster forward pass for a request that is alone on a CPU, where one is measured to exist.

At batch 1 a small model spends its time on per-layer overhead rather than arithmetic: in fp32
(a CPU without native bf16), the 96 px demo U-Net takes ~19 ms in torch on 2 cores and ~11 ms
in ONNX Runtime; at 256 px, 67 against 54. So at start-up a worker running an fp32 network has
the model exported to ONNX, times both runtimes on a batch of one with every core (one worker of
the machine at a time: measured side by side, both lose), and keeps ONNX Runtime for lone
requests only if it is clearly faster on this machine and this model. A bf16 network is not
measured against it (12.7 ms at 96 px, 21 at 256 px: torch's). Batches of several requests
always run in torch. Masks from ONNX Runtime are fp32's.

The export runs in a child process: torch's ONNX exporter and the onnx package would otherwise
stay in every worker (~120 MB each); the session itself costs about the weights again (~110 MB
for the demo model), and nothing when ONNX Runtime loses.
"""

from __future__ import annotations

import io
import logging
import multiprocessing
import statistics
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from handler.model import load_exported

logger = logging.getLogger(__name__)

Forward = Callable[[torch.Tensor], torch.Tensor]
MARGIN = 0.8
"""ONNX Runtime is kept when it takes at most this share of torch's time."""


def _median_ms(forward: Forward, pixels: torch.Tensor, calls: int = 7) -> float:
    forward(pixels)  # first call: allocations, kernel choice
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        forward(pixels)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def export_onnx(model_dir: Path) -> bytes | None:
    """The exported model of ``model_dir`` as ONNX for a batch of one (its only use here: a
    fixed shape), or None when the onnx package is missing. Runs in the child process."""
    model, spec = load_exported(model_dir)
    size = spec.input_size
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # the TorchScript-based exporter is deprecated, but the new one needs onnxscript
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            torch.onnx.export(
                model,
                torch.zeros(1, 3, size, size),
                buffer,
                input_names=["x"],
                output_names=["logits"],
                dynamo=False,
            )
        except torch.onnx.OnnxExporterError:
            return None
    return buffer.getvalue()


def onnx_forward(model_dir: Path, threads: int) -> Forward | None:
    """The model in ONNX Runtime on the CPU with ``threads`` threads, for a batch of one, or
    None when ONNX Runtime or the ONNX exporter is missing."""
    try:
        import onnxruntime
    except ImportError:
        return None
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
        exported = child.submit(export_onnx, model_dir).result()
    if exported is None:
        return None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # threads sleep when a run ends instead of spinning: the other worker needs the cores
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(exported, options, providers=["CPUExecutionProvider"])

    def forward(pixels: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {"x": pixels.contiguous().numpy()})[0])

    return forward


def faster_lone_forward(
    model_dir: Path, size: int, threads: int, torch_forward: Forward
) -> Forward | None:
    """ONNX Runtime's forward pass if it beats ``torch_forward`` (already set up for a lone
    request: ``threads`` threads) on a batch of one by the margin; else None. The caller holds
    the machine alone while this measures."""
    candidate = onnx_forward(model_dir, threads)
    if candidate is None:
        return None
    pixels = torch.zeros(1, 3, size, size)
    torch_ms = _median_ms(torch_forward, pixels)
    onnx_ms = _median_ms(candidate, pixels)
    chosen = onnx_ms <= MARGIN * torch_ms
    logger.info(
        "lone requests: ONNX Runtime %.1f ms, torch %.1f ms at batch 1 with %d threads: %s",
        onnx_ms,
        torch_ms,
        threads,
        "ONNX Runtime" if chosen else "torch",
    )
    return candidate if chosen else None
