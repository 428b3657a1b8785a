"""The loop widget's prediction cache (``_napari/preview.py``), without Qt: what the threshold
preview reads after Infer, after a whole-stack Infer as the slice changes, and after live
rounds that predict one box at a time."""

from __future__ import annotations

import numpy as np

from napari_hitl._napari.preview import PredictionPreview
from napari_hitl.core.learning.prediction import Prediction


def _pred(shape: tuple[int, ...], label: int, conf: float) -> Prediction:
    k = 2
    probs = np.zeros((k, *shape), np.float32)
    probs[label - 1] = conf
    probs[2 - label] = 1 - conf
    z = np.zeros(shape, np.float32)
    return Prediction(np.full(shape, label, np.uint16), probs, np.full(shape, conf, np.float32),
                      z.copy(), z.copy())  # fmt: skip


def test_accepted_is_confident_unlabeled_and_inside_the_region():
    pv = PredictionPreview()
    labels = np.zeros((20, 30), np.uint16)
    assert pv.accepted(labels, 0.9, None, 0) is None  # nothing predicted yet
    pv.keep("a", _pred((20, 30), 1, 0.97), None)
    labels[0, 0] = 2  # a human label is never replaced
    acc = pv.accepted(labels, 0.95, (0, 10, 0, 10), 0)
    assert acc.sum() == 100 - 1 and not acc[0, 0] and not acc[10:, :].any()
    assert not pv.accepted(labels, 0.99, None, 0).any()  # below the threshold
    assert pv.accepted(np.zeros((5, 5), np.uint16), 0.5, None, 0) is None  # another image's size


def test_a_whole_stack_prediction_follows_the_slice_on_show():
    pv = PredictionPreview()
    stack = _pred((3, 8, 8), 1, 0.99)
    stack.labels[2] = 2
    pv.keep_stack("s", stack)
    assert pv.prediction is None and not pv.show_slice(None)
    assert pv.show_slice(2) and pv.index == 2
    assert (pv.prediction.labels == 2).all() and pv.prediction.probabilities.shape == (2, 8, 8)
    labels = np.zeros((3, 8, 8), np.uint16)
    labels[2, :4] = 1  # the layer holds the stack: the preview reads the slice on show
    assert pv.accepted(labels, 0.95, None, 0).sum() == 32


def test_live_boxes_are_pasted_into_one_prediction_until_the_image_changes():
    pv = PredictionPreview()
    pv.paste("a", _pred((4, 4), 2, 0.99), (0, 4, 0, 4), None, (10, 10))
    pv.paste("a", _pred((4, 4), 1, 0.99), (6, 10, 6, 10), None, (10, 10))
    p = pv.prediction
    assert (p.labels[:4, :4] == 2).all() and (p.labels[6:, 6:] == 1).all()
    assert (p.labels[4:6] == 0).all() and (p.confidence[4:6] == 0).all()  # not predicted yet
    pv.paste("b", _pred((4, 4), 1, 0.99), (0, 4, 0, 4), None, (10, 10))  # another image
    assert pv.image == "b" and (pv.prediction.labels[6:, 6:] == 0).all()
