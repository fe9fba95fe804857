"""Turning logits into a mask at the photo's size: the serving path's own argmax."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from handler.imaging import Letterbox
from handler.model import photo_labels
from model_training.network import predict_labels


@pytest.mark.parametrize("classes", [1, 2, 3, 5])
def test_photo_labels_are_the_argmax_of_the_upsampled_content(classes):
    logits = torch.randn(classes, 32, 32, generator=torch.Generator().manual_seed(classes))
    box = Letterbox.fit(90, 40, 32)
    content = F.interpolate(box.crop(logits)[None], size=(40, 90), mode="bilinear")
    expected = predict_labels(content)[0].numpy()
    labels = photo_labels(logits, box, 40, 90)
    assert labels.dtype == np.uint8 and labels.shape == (40, 90)
    assert set(np.unique(labels)) == set(range(max(classes, 2)))
    assert (labels == expected).mean() > 0.999
