"""The model's own speed on this machine: forward passes in-process, no HTTP, no image codecs.

This is the ceiling a server can approach. Each variant runs at the serving input size on the
model's device (every core given to torch on a CPU), at batch 1 and at the configured batch size.
"""

from __future__ import annotations

import copy
import io
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from handler.model import ServingModel

Forward = Callable[[torch.Tensor], object]


@dataclass(frozen=True)
class Variant:
    name: str
    make: Callable[[torch.nn.Module, int], Forward | None]
    """(model, input size) -> a forward function, or None where this machine cannot run it."""


def eager(model: torch.nn.Module, size: int) -> Forward:
    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(x)

    return forward


def served(model: torch.nn.Module, size: int) -> Forward:
    """What the handler runs (handler.model.ServingModel): batch norms folded, channels-last,
    bf16 weights on this CPU where it has native bf16."""
    return ServingModel(copy.deepcopy(model), next(model.parameters()).device, True)


def onnxruntime_fp32(model: torch.nn.Module, size: int) -> Forward | None:
    """The model exported to ONNX and run by ONNX Runtime on the CPU (when it is installed)."""
    try:
        import onnxruntime
    except ImportError:
        return None
    if next(model.parameters()).device.type != "cpu":
        return None
    buffer = io.BytesIO()
    example = torch.zeros(1, 3, size, size)
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated, but the new one needs onnxscript.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            example,
            buffer,
            input_names=["x"],
            output_names=["logits"],
            dynamic_axes={"x": {0: "n"}},
            dynamo=False,
        )
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(
        buffer.getvalue(), options, providers=["CPUExecutionProvider"]
    )
    return lambda x: session.run(None, {"x": x.cpu().numpy()})


VARIANTS = [
    Variant("eager fp32", eager),
    Variant("served (ServingModel)", served),
    Variant("ONNX Runtime fp32", onnxruntime_fp32),
]


def images_per_s(
    forward: Forward, batch: int, size: int, seconds: float, device: torch.device
) -> float:
    """Throughput over at least ``seconds`` after two untimed warm-up calls."""
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    x = x.to(device)
    forward(x)
    forward(x)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        forward(x)
        calls += 1
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return calls * batch / (time.perf_counter() - start)


def measure_limits(
    model: torch.nn.Module, size: int, batches: list[int], seconds: float
) -> list[dict]:
    rows = []
    device = next(model.parameters()).device
    for variant in VARIANTS:
        forward = variant.make(model, size)
        for batch in batches:
            rate = None
            if forward is not None:
                rate = round(images_per_s(forward, batch, size, seconds, device), 2)
            rows.append({"variant": variant.name, "batch": batch, "images_per_s": rate})
    return rows
