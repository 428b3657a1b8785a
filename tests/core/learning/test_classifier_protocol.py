"""Every model of the loop is a :class:`~napari_hitl.core.learning.base.Classifier`: one interface
for the loop, batch prediction, explanations and the store, whatever the model."""

from __future__ import annotations

import numpy as np
import pytest

from napari_hitl.core.learning.base import Classifier
from napari_hitl.core.learning.data import Normalization
from napari_hitl.core.learning.registry import make_classifier

NORM = Normalization(["a", "b"], np.zeros(2, np.float32), np.ones(2, np.float32))


@pytest.mark.parametrize("kind", ["unet", "patch-cnn", "rf", "unet+rf"])
def test_every_model_is_a_classifier(kind):
    clf = make_classifier(kind, NORM, [1, 2], ["x", "y"])
    assert isinstance(clf, Classifier)
    assert clf.align >= 1 and clf.halo >= 0


def test_windows_follow_the_strictest_member():
    unet = make_classifier("unet", NORM, [1, 2], ["x", "y"])
    assert unet.align > 1  # pooling: windows are multiples of it
    assert make_classifier("rf", NORM, [1, 2], ["x", "y"]).align == 1
    assert make_classifier("unet+rf", NORM, [1, 2], ["x", "y"]).align == unet.align


def test_an_object_without_the_interface_is_not_a_classifier():
    class Half:
        kind = "half"

        def fit(self, images, config, cancel=None):
            yield from ()

    assert not isinstance(Half(), Classifier)
