"""The network as the handler runs it: folded batch norms change nothing but the speed, and bf16
weights stay close to fp32."""

import pytest
import torch

from handler.model import ServingModel, autocast_dtype, load_exported

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def eager_and_pixels(tiny_export):
    model, spec = load_exported(tiny_export)
    pixels = torch.rand(4, 3, spec.input_size, spec.input_size, generator=torch.manual_seed(0))
    with torch.inference_mode():
        logits = model(pixels)
    return model, pixels, logits


def test_fp32_serving_model_folds_batch_norms_without_changing_the_logits(eager_and_pixels):
    model, pixels, expected = eager_and_pixels
    served = ServingModel(model, CPU, mixed_precision=False)
    assert served.precision == "float32"
    kinds = {type(module).__name__ for module in served.network.modules()}
    assert "BatchNorm2d" not in kinds
    assert "BatchNorm2d" in {type(module).__name__ for module in model.modules()}
    logits = served(pixels)
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, expected, atol=1e-3, rtol=1e-3)


@pytest.mark.skipif(autocast_dtype(CPU) != torch.bfloat16, reason="no native bf16 on this CPU")
def test_bf16_serving_model_holds_bf16_weights_and_answers_fp32_labels(eager_and_pixels):
    model, pixels, expected = eager_and_pixels
    served = ServingModel(model, CPU, mixed_precision=True)
    assert served.precision == "bfloat16"
    assert {p.dtype for p in served.network.parameters()} == {torch.bfloat16}
    logits = served(pixels)
    assert logits.dtype == torch.float32
    agreement = (logits.argmax(1) == expected.argmax(1)).float().mean().item()
    assert agreement > 0.99
