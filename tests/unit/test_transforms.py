import numpy as np
import torch
from PIL import Image

from handler.spec import IGNORE_INDEX, ModelSpec
from model_training.transforms import EvalTransform, TrainTransform

SPEC = ModelSpec(input_size=64, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def half_and_half(w=120, h=80):
    """Left half red and labelled 1, right half blue and labelled 2."""
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[:, : w // 2, 0] = 255
    rgb[:, w // 2 :, 2] = 255
    labels = np.ones((h, w), np.uint8)
    labels[:, w // 2 :] = 2
    return Image.fromarray(rgb), Image.fromarray(labels)


def test_train_transform_keeps_mask_aligned_with_image():
    transform = TrainTransform(SPEC)
    transform.jitter = lambda image: image  # colour jitter would blur the colour test
    np.random.seed(0)
    for _ in range(20):
        pixels, labels = transform(*half_and_half())
        assert pixels.shape == (3, 64, 64) and labels.shape == (64, 64)
        red, blue = pixels[0] > 0.5, pixels[2] > 0.5
        # away from the resampled seam every red pixel is class 1, every blue one class 2
        assert (labels[red & ~blue] == 1).float().mean() > 0.97
        assert (labels[blue & ~red] == 2).float().mean() > 0.97
        assert torch.all(pixels[:, labels == IGNORE_INDEX] == 0)


def test_train_transform_is_random_but_seedable():
    image, mask = half_and_half()
    np.random.seed(1)
    torch.manual_seed(1)
    first = TrainTransform(SPEC)(image, mask)
    np.random.seed(1)
    torch.manual_seed(1)
    again = TrainTransform(SPEC)(image, mask)
    other = TrainTransform(SPEC)(image, mask)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[1], other[1])


def test_eval_transform_is_the_serving_letterbox():
    pixels, labels = EvalTransform(SPEC)(*half_and_half(120, 60))
    assert labels.dtype == torch.long
    assert (labels[:16] == IGNORE_INDEX).all() and (labels[-16:] == IGNORE_INDEX).all()
    assert (labels[16:48, :32] == 1).all() and (labels[16:48, 32:] == 2).all()
    assert torch.equal(EvalTransform(SPEC)(*half_and_half(120, 60))[0], pixels)
