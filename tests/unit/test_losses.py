import torch

from model_training.losses import SegmentationLoss


def logits_for(labels: torch.Tensor, classes: int, confidence: float = 10.0) -> torch.Tensor:
    safe = labels.clamp(max=classes - 1)
    return torch.nn.functional.one_hot(safe, classes).permute(0, 3, 1, 2).float() * confidence


def test_confident_correct_prediction_has_near_zero_loss():
    labels = torch.randint(0, 3, (2, 8, 8))
    assert SegmentationLoss()(logits_for(labels, 3), labels) < 0.01


def test_ignored_pixels_do_not_change_the_loss():
    labels = torch.randint(0, 3, (2, 8, 8))
    logits = torch.randn(2, 3, 8, 8)
    ignored = labels.clone()
    ignored[:, :2] = 255
    noisy = logits.clone()
    noisy[:, :, :2] = torch.randn(2, 3, 2, 8) * 100
    loss = SegmentationLoss()
    assert torch.isclose(loss(logits, ignored), loss(noisy, ignored))
    assert not torch.isclose(loss(logits, ignored), loss(logits, labels))


def test_binary_uses_one_logit_and_honours_ignore():
    labels = torch.randint(0, 2, (2, 8, 8))
    good = (labels.float() * 2 - 1)[:, None] * 10
    loss = SegmentationLoss()
    assert loss(good, labels) < 0.01
    assert loss(-good, labels) > 1.0
    labels[0] = 255
    assert torch.isfinite(loss(torch.randn(2, 1, 8, 8), labels))


def test_all_ignored_batch_is_zero_and_differentiable():
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    out = SegmentationLoss()(logits, torch.full((1, 4, 4), 255))
    out.backward()
    assert out.item() == 0.0
