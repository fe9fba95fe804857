import io

import numpy as np
import pytest
from PIL import Image

from handler.imaging import (
    Letterbox,
    colorize,
    letterbox_image,
    letterbox_mask,
    normalize,
    palette_image,
)

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


@pytest.mark.parametrize(("w", "h"), [(500, 375), (375, 500), (64, 64), (4000, 3000), (1, 300)])
def test_letterbox_fits_longer_side_and_centres(w, h):
    box = Letterbox.fit(w, h, 128)
    assert max(box.width, box.height) == 128
    assert box.left + box.width <= 128 and box.top + box.height <= 128
    assert abs(box.left - (128 - box.width - box.left)) <= 1
    assert abs(box.top - (128 - box.height - box.top)) <= 1
    assert abs(box.width / box.height - w / h) < max(0.05 * w / h, 1 / box.height + 0.02)


def test_letterbox_padding_is_zero_and_content_is_normalised():
    image = Image.new("RGB", (200, 100), (255, 255, 255))
    pixels, box = letterbox_image(image, 64, MEAN, STD)
    assert pixels.shape == (3, 64, 64) and pixels.dtype == np.float32
    assert np.allclose(box.crop(pixels), (1 - 0.5) / 0.25)
    outside = np.ones((64, 64), bool)
    box.crop(outside)[...] = False
    assert outside.any() and np.all(pixels[:, outside] == 0)


def test_mask_letterbox_matches_image_geometry():
    mask = Image.fromarray(np.full((100, 200), 2, np.uint8))
    labels = letterbox_mask(mask, 64, fill=255)
    box = Letterbox.fit(200, 100, 64)
    assert np.all(box.crop(labels) == 2)
    assert (labels == 255).sum() == 64 * 64 - box.width * box.height


def test_normalize_channels():
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 0] = 255
    out = normalize(rgb, MEAN, STD)
    assert out.shape == (3, 2, 2)
    assert np.allclose(out[0], 2.0) and np.allclose(out[1:], -2.0)


def test_palette_image_keeps_class_ids_and_colours():
    mask = np.array([[0, 1], [2, 1]], np.uint8)
    palette = [[0, 0, 0], [255, 0, 0], [0, 255, 0]]
    buf = io.BytesIO()
    palette_image(mask, palette).save(buf, format="PNG")
    reread = Image.open(io.BytesIO(buf.getvalue()))
    assert reread.mode == "P"
    assert np.array_equal(np.asarray(reread), mask)
    assert np.array_equal(np.asarray(reread.convert("RGB")), colorize(mask, palette))


def test_colorize_marks_ignore_white():
    out = colorize(np.array([[255, 1]], np.uint8), [[0, 0, 0], [255, 0, 0]])
    assert out[0, 0].tolist() == [255, 255, 255] and out[0, 1].tolist() == [255, 0, 0]
