"""The mask figures the handler reports for monitoring, against softmax and argmax."""

from __future__ import annotations

import pytest
import torch

from handler.imaging import Letterbox
from handler.quality import mask_quality


def reference(logits: torch.Tensor, box: Letterbox) -> tuple[float, set[int], float]:
    """Foreground share, classes present and uncertainty, the slow and obvious way."""
    content = box.crop(logits)
    if content.shape[0] == 1:
        content = torch.cat([torch.zeros_like(content), content])
    confidence, labels = content.softmax(0).max(0)
    present = {int(c) for c in labels.unique()} - {0}
    return float((labels > 0).float().mean()), present, 1 - float(confidence.mean())


@pytest.mark.parametrize("classes", [3, 1])
@pytest.mark.parametrize("size", [(500, 375), (120, 400), (64, 64)])
def test_figures_equal_softmax_and_argmax_on_the_photo_s_region(classes, size):
    torch.manual_seed(classes + size[0])
    box = Letterbox.fit(*size, 64)
    logits = torch.randn(8, classes, 64, 64).contiguous(memory_format=torch.channels_last)[3]
    logits[..., : box.top, :] = 50  # padding: must not count
    quality = mask_quality(logits, box)
    fraction, present, uncertainty = reference(logits, box)
    assert quality.foreground_fraction == pytest.approx(fraction, abs=1e-6)
    assert set(quality.classes_present) == present
    assert quality.uncertainty == pytest.approx(uncertainty, abs=1e-5)


def test_an_empty_and_certain_mask():
    logits = torch.zeros(3, 32, 32)
    logits[0] = 30.0
    quality = mask_quality(logits, Letterbox.fit(32, 32, 32))
    assert quality.foreground_fraction == 0 and quality.classes_present == ()
    assert quality.uncertainty == pytest.approx(0, abs=1e-6)
