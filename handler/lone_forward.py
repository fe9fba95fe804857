"""A faster forward pass for a request that is alone on a CPU, where one is measured to exist.

At batch 1 a small model spends its time on per-layer overhead rather than arithmetic: the
96 px demo U-Net takes ~21 ms in torch on 2 cores (bf16 or fp32 alike), ~10 ms in ONNX Runtime
fp32. At 256 px torch's bf16 wins (~34 ms against ~54). So at start-up the worker exports the
model to ONNX, times both runtimes on a batch of one with every core, and keeps ONNX Runtime for
lone requests only if it is clearly faster on this machine and this model. Batches of several
requests always run in torch (bf16 batches are faster there). Masks from ONNX Runtime are fp32's.
"""

from __future__ import annotations

import io
import logging
import statistics
import time
import warnings
from collections.abc import Callable

import torch

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


def onnx_forward(model: torch.nn.Module, size: int, threads: int) -> Forward | None:
    """The model in ONNX Runtime on the CPU with ``threads`` threads, for a batch of one (its
    only use; a fixed shape), or None when ONNX Runtime or the ONNX exporter is missing."""
    try:
        import onnxruntime
    except ImportError:
        return None
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
        except torch.onnx.OnnxExporterError:  # the onnx package is missing
            return None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # threads sleep when a run ends instead of spinning: the other worker needs the cores
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(
        buffer.getvalue(), options, providers=["CPUExecutionProvider"]
    )

    def forward(pixels: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {"x": pixels.contiguous().numpy()})[0])

    return forward


def faster_lone_forward(
    model: torch.nn.Module, size: int, threads: int, torch_forward: Forward
) -> Forward | None:
    """ONNX Runtime's forward pass if it beats ``torch_forward`` (already set up for a lone
    request: ``threads`` threads) on a batch of one by the margin; else None."""
    candidate = onnx_forward(model, size, threads)
    if candidate is None:
        return None
    pixels = torch.zeros(1, 3, size, size).contiguous(memory_format=torch.channels_last)
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
