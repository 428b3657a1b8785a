"""Scores read from the confusion matrix, and values outside the classes refused."""

import numpy as np
import pytest

from napari_hitl.core.evaluation.metrics import (
    balanced_accuracy,
    confusion,
    image_scores,
    scores,
)


def test_scores_of_a_known_confusion():
    truth = np.array([[1, 1, 2, 2], [0, 0, 2, 2]])
    pred = np.array([[1, 2, 2, 2], [1, 2, 2, 0]])
    s = scores(confusion(pred, truth, 2))
    # class 1: 1 right, union 2 → 1/2; class 2: 3 right of 4 predicted and 4 true → 3/5
    assert s["miou"] == pytest.approx((0.5 + 0.6) / 2)
    assert s["pixel_accuracy"] == pytest.approx(4 / 6)  # the pixel predicted 0 counts as wrong


def test_image_scores_show_the_image_that_went_wrong():
    truth = [np.array([1, 1, 2, 2, 0]), np.array([1, 1, 1, 2])]
    pred = [np.array([1, 1, 2, 2, 2]), np.array([2, 2, 2, 2])]  # the second: all class 2
    cms = [confusion(p, t, 2) for p, t in zip(pred, truth, strict=True)]
    good, bad = image_scores(cms, ["a", "b"])
    assert good == {
        "image": "a",
        "pixels": 4,  # the pixel without truth is not counted
        "miou": 1.0,
        "pixel_accuracy": 1.0,
        "predicted_share": [0.5, 0.5],
        "true_share": [0.5, 0.5],
    }
    assert bad["image"] == "b" and bad["pixel_accuracy"] == 0.25
    assert bad["predicted_share"] == [0.0, 1.0] and bad["true_share"] == [0.75, 0.25]
    assert bad["miou"] == pytest.approx((0 + 0.25) / 2)


@pytest.mark.parametrize("bad", ["pred", "truth"])
def test_values_beyond_the_classes_are_refused(bad):
    truth = np.array([1, 2, 2, 1])
    pred = np.array([1, 2, 2, 1])
    arrays = {"pred": pred.copy(), "truth": truth.copy()}
    arrays[bad][0] = 7  # with 4 classes a 7 would land in another class's cell
    with pytest.raises(ValueError, match=r"outside the classes 0\.\.4"):
        confusion(arrays["pred"], arrays["truth"], 4)
    arrays[bad][0] = -1
    with pytest.raises(ValueError, match="outside the classes"):
        confusion(arrays["pred"], arrays["truth"], 4)


def test_balanced_accuracy_is_the_mean_recall_of_the_classes_present():
    truth = np.array([1, 1, 1, 1, 2, 0, 0])  # class 3 absent, 0 = no truth
    pred = np.array([1, 1, 1, 2, 1, 3, 3])
    cm = confusion(pred, truth, 3)
    assert balanced_accuracy(cm) == pytest.approx((3 / 4 + 0 / 1) / 2)
    assert np.isnan(balanced_accuracy(confusion(pred, np.zeros(7, int), 3)))
