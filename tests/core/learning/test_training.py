"""Training from sparse labels reaches accuracy on held-out data; bad labels get clear errors."""

from __future__ import annotations

import re

import numpy as np
import pytest
from tests.helpers import scribbled_scenes

from napari_hitl.core.errors import Cancelled
from napari_hitl.core.learning.data import (
    IncompatibleBandsError,
    TrainingDataError,
    class_index,
    make_labeled_image,
)
from napari_hitl.core.learning.net import NetClassifier, TrainConfig, fit_temperature
from napari_hitl.core.learning.prediction import predict_normalized
from napari_hitl.core.learning.registry import make_classifier
from napari_hitl.core.progress import CancelToken, run_to_end

CLASSES = [1, 2, 3, 4, 5]


@pytest.fixture(scope="module")
def scenes():
    return scribbled_scenes()


@pytest.mark.parametrize(("kind", "steps", "floor"), [("unet", 80, 0.75), ("rf", None, 0.75)])
def test_model_reaches_accuracy_on_a_held_out_scene(scenes, kind, steps, floor):
    norm, image, x_test, truth, names = scenes
    clf = make_classifier(kind, norm, CLASSES, names)
    report = run_to_end(clf.fit([image], TrainConfig(model=kind, steps=steps, seed=0)))
    pred = run_to_end(predict_normalized(clf, x_test))
    acc = float((pred.labels == truth).mean())
    print(f"{kind}: held-out pixel accuracy {acc:.3f}, T={report.temperature:.2f}")
    assert acc > floor
    assert report.holdout_pixels > 0 and report.temperature >= 1.0
    np.testing.assert_allclose(pred.probabilities.sum(0), 1, atol=1e-4)
    assert (pred.confidence >= pred.margin).all() and (pred.margin >= 0).all()


def test_patch_cnn_learns(scenes):
    norm, image, x_test, truth, names = scenes
    clf = make_classifier("patch-cnn", norm, CLASSES, names)
    run_to_end(clf.fit([image], TrainConfig(model="patch-cnn", steps=100, seed=0)))
    pred = run_to_end(predict_normalized(clf, x_test))
    assert float((pred.labels == truth).mean()) > 0.6  # chance is 0.2: it learned


def test_training_is_deterministic_and_warm_starts(scenes):
    norm, image, *_ = scenes
    a = NetClassifier("unet", norm, CLASSES, list("abcde"))
    b = NetClassifier("unet", norm, CLASSES, list("abcde"))
    cfg = TrainConfig(steps=5, warm_steps=3, seed=7)
    ra = run_to_end(a.fit([image], cfg))
    run_to_end(b.fit([image], cfg))
    for pa, pb in zip(a.net.state_dict().values(), b.net.state_dict().values(), strict=True):
        assert np.array_equal(pa.numpy(), pb.numpy())
    assert not ra.warm_start and ra.steps == 5
    rb = run_to_end(a.fit([image], cfg))
    assert rb.warm_start and rb.steps == 3


def test_warm_start_shrinks_towards_the_initial_weights(scenes):
    """Shrink & perturb: a warm start begins from λ·θ_last + (1 − λ)·θ_init (λ = warm_shrink)."""
    import copy

    from napari_hitl.core.learning.networks import build_model
    from napari_hitl.core.learning.weights import shrink_towards_init

    norm, image, *_ = scenes
    clf = NetClassifier("unet", norm, CLASSES, list("abcde"))
    run_to_end(clf.fit([image], TrainConfig(steps=4, seed=3)))
    last = copy.deepcopy(clf.net)
    torch = pytest.importorskip("torch")
    torch.manual_seed(3)
    init = build_model(clf.spec)
    shrink_towards_init(clf.net, clf.spec, 0.25, 3)
    for p, p_last, p_init in zip(
        clf.net.parameters(), last.parameters(), init.parameters(), strict=True
    ):
        np.testing.assert_allclose(
            p.detach().numpy(),
            0.25 * p_last.detach().numpy() + 0.75 * p_init.detach().numpy(),
            rtol=1e-5,
            atol=1e-6,
        )
    # λ = 1 is a plain warm start: training continues from the very same weights
    plain = copy.deepcopy(last)
    shrink_towards_init(plain, clf.spec, 1.0, 3)
    for p, q in zip(plain.parameters(), last.parameters(), strict=True):
        assert torch.equal(p, q)


def test_cancel_stops_training(scenes):
    norm, image, *_ = scenes
    clf = NetClassifier("unet", norm, CLASSES, list("abcde"))
    token = CancelToken()
    job = clf.fit([image], TrainConfig(steps=50), token)
    next(job)
    token.cancel()
    with pytest.raises(Cancelled):
        run_to_end(job)


def test_clear_errors_for_unusable_labels(scenes):
    norm, image, *_ = scenes
    clf = NetClassifier("unet", norm, CLASSES, list("abcde"))
    empty = make_labeled_image(
        "e",
        image.x,
        np.zeros(image.target.shape, np.uint16),
        np.zeros(image.target.shape, np.uint16),
        CLASSES,
        0.5,
    )
    with pytest.raises(TrainingDataError, match="no labels yet"):
        run_to_end(clf.fit([empty], TrainConfig()))
    one = np.zeros(image.target.shape, np.uint16)
    one[:10, :10] = 2
    single = make_labeled_image("s", image.x, one, (one > 0).astype(np.uint16), CLASSES, 0.5)
    with pytest.raises(TrainingDataError, match=r"only one class is labeled \(b\)"):
        run_to_end(clf.fit([single], TrainConfig()))
    with pytest.raises(TrainingDataError, match=r"label values \[9\]"):
        class_index(np.array([[0, 9]]), CLASSES)


def test_nan_bands_do_not_poison_training(scenes):
    norm, image, *_ = scenes
    raw = np.array(image.x)
    raw[:, :20, :20] = np.nan
    x = norm.apply(raw)
    assert np.isfinite(x).all() and (x[:, :20, :20] == 0).all()


def test_band_mismatch_is_refused(scenes):
    norm, *_ = scenes
    with pytest.raises(IncompatibleBandsError, match="trained on bands"):
        norm.check(["B01", "B02"])


@pytest.mark.parametrize("objective", ["nll", "brier"])
def test_temperature_only_softens(objective):
    logits = np.array([[4.0, 0.0], [0.0, 4.0], [3.0, 0.0], [4.0, 0.0]])
    target = np.array([0, 1, 1, 0])  # one confident mistake → soften
    t, before, after = fit_temperature(logits, target, objective)
    assert t > 1.0 and after < before
    t2, _, _ = fit_temperature(logits[[0, 1, 3]], target[[0, 1, 3]], objective)  # all right → 1
    assert t2 == pytest.approx(1.0)


def test_brier_temperature_is_not_set_by_a_few_confident_mistakes():
    """One held-out stroke the model gets wrong at its highest confidence (5 % of the pixels):
    NLL softens every pixel to T ≈ 2.3, Brier (a bounded cost per pixel) keeps T = 1."""
    logits = np.zeros((200, 3))
    logits[:, 0] = np.linspace(3, 12, 200)
    target = np.zeros(200, int)
    target[-10:] = 1
    t_nll, _, _ = fit_temperature(logits, target, "nll")
    t_brier, _, _ = fit_temperature(logits, target, "brier")
    assert t_nll > 2.0 and t_brier == pytest.approx(1.0)
    with pytest.raises(ValueError, match="calibration must be one of"):
        fit_temperature(logits, target, "ece")


def test_test_time_augmentation_is_flip_equivariant_and_kept_with_the_model(scenes):
    """With ``tta`` the logits of a flipped image are the flipped logits (the mean over the flip
    group makes the network equivariant); without it they are not. Tiles equal the whole image,
    and a saved model predicts the same way after loading."""
    from napari_hitl.core.learning.registry import classifier_from_state

    norm, image, test_x, _truth, names = scenes
    x = test_x[:, :96, :80]
    models = {}
    for tta in (False, True):
        clf = make_classifier("unet", norm, CLASSES, names)
        run_to_end(clf.fit([image], TrainConfig(steps=20, seed=0, threads=1, tta=tta)))
        models[tta] = clf
    flipped = x[:, :, ::-1].copy()
    gap = {
        tta: float(np.abs(clf.logits(flipped)[:, :, ::-1] - clf.logits(x)).max())
        for tta, clf in models.items()
    }
    assert gap[True] < 1e-3 < gap[False]
    clf = models[True]
    np.testing.assert_allclose(clf.logits(x, tile=32), clf.logits(x), atol=1e-4)
    again = classifier_from_state(*clf.state())
    assert again.tta
    np.testing.assert_allclose(again.logits(x), clf.logits(x), atol=1e-5)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"steps": 0}, "training steps (--steps) must be a whole number >= 1, got 0"),
        ({"lr": float("nan")}, "learning rate must be a finite number > 0"),
        ({"time_budget": 0.0}, "time budget (--time-budget) must be a number of seconds > 0"),
        ({"time_budget": float("inf")}, "time budget (--time-budget) must be a number of"),
        ({"machine_weight": -1.0}, "machine weight (--machine-weight) must be a finite number"),
        ({"warm_shrink": float("nan")}, "warm shrink (--warm-shrink) must be in [0, 1]"),
        ({"holdout_fraction": 1.0}, "held-out share of strokes must be in [0, 1), got 1.0"),
        ({"calibration": "mse"}, "calibration (--calibration) is 'brier' or 'nll', not 'mse'"),
    ],
)
@pytest.mark.parametrize("kind", ["unet", "rf"])
def test_settings_no_training_can_use_are_refused_before_it_starts(scenes, kind, change, message):
    norm, image, _x, _truth, names = scenes
    clf = make_classifier(kind, norm, CLASSES, names)
    job = clf.fit([image], TrainConfig(model=kind, seed=0, **change))
    with pytest.raises(ValueError, match=re.escape(message)):
        next(job)
    assert not clf.trained
