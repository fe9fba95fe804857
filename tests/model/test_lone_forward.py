"""A lone request's runtime: ONNX Runtime computes what torch's fp32 model computes, and is only
chosen when it measures faster."""

import logging

import torch

from handler import lone_forward
from handler.model import load_exported


def test_onnx_runtime_computes_the_fp32_logits(tiny_export):
    model, spec = load_exported(tiny_export)
    forward = lone_forward.onnx_forward(tiny_export, threads=1)  # exported in a child process
    pixels = torch.randn(1, 3, spec.input_size, spec.input_size)
    with torch.inference_mode():
        expected = model(pixels)
    assert forward(pixels).shape == expected.shape
    assert torch.allclose(forward(pixels), expected, atol=1e-3)


def test_it_is_kept_only_when_clearly_faster_than_torch(tiny_export, caplog, monkeypatch):
    model, spec = load_exported(tiny_export)
    caplog.set_level(logging.INFO, logger=lone_forward.__name__)
    timings = iter([0.001, 1.0, 10.0, 1.0])  # (torch, ONNX Runtime) ms, twice
    monkeypatch.setattr(lone_forward, "_median_ms", lambda forward, pixels: next(timings))
    assert lone_forward.faster_lone_forward(tiny_export, spec.input_size, 1, model) is None
    assert lone_forward.faster_lone_forward(tiny_export, spec.input_size, 1, model) is not None
    assert "ONNX Runtime 1.0 ms, torch 0.0 ms" in caplog.text
    assert caplog.text.count("lone requests:") == 2
