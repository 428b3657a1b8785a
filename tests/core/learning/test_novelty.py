"""The novelty gate: pixels unlike every stroke lose confidence, never their class."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.helpers import scribbled_scenes

from napari_hitl.core.errors import StoreError
from napari_hitl.core.learning.net import TrainConfig
from napari_hitl.core.learning.novelty import NoveltyGate
from napari_hitl.core.learning.registry import classifier_from_state, make_classifier
from napari_hitl.core.progress import run_to_end

CLASSES = [1, 2, 3, 4, 5]


def _two_clusters(rng: np.random.Generator, n: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """8-D features: class 0 spread along axis 0, class 1 tight, far from it."""
    a = rng.normal(0, 1, (8, n))
    a[0] *= 10
    b = rng.normal(0, 0.5, (8, n)) + 20
    return np.concatenate([a, b], 1).astype(np.float32), np.repeat([0, 1], n)


def test_gate_passes_the_strokes_own_pixels_and_shrinks_far_ones():
    rng = np.random.default_rng(0)
    f, y = _two_clusters(rng)
    gate = NoveltyGate.fit(f, y, factor=1.0, rng=rng)
    own = gate.scale(torch.from_numpy(f)[:, :, None])  # D, N, 1 as an image
    assert 0.005 < float((own < 1).float().mean()) < 0.02  # the 99th percentile, by definition
    probe = np.zeros((8, 3, 1), np.float32)
    probe[0, 0] = 25.0  # along class 0's long axis: 2.5 of its standard deviations
    probe[:, 1] = 20.0
    probe[3, 1] = 24.0  # 8 standard deviations off the tight class (0.16 of class 0's long one)
    probe[:, 2] = -60.0  # far from both
    s = gate.scale(torch.from_numpy(probe))[:, 0].numpy()
    assert s[0] == 1.0  # the class's own spread: not novel
    assert s[1] < 0.9  # near in plain distance, novel for the tight class's covariance
    assert s[2] < 0.05
    wide = NoveltyGate.fit(f, y, factor=3.0, rng=np.random.default_rng(0))
    assert wide.tau == pytest.approx(3 * gate.tau, rel=0.05)


def test_gate_survives_json_and_refuses_damaged_statistics():
    f, y = _two_clusters(np.random.default_rng(1), 500)
    gate = NoveltyGate.fit(f, y, factor=2.0)
    again = NoveltyGate.from_json(gate.to_json(), n_features=8)
    x = torch.from_numpy(f[:, :50])
    assert torch.equal(again.distances(x), gate.distances(x))
    good = gate.to_json()
    bad = [
        {k: v for k, v in good.items() if k != "tau"},
        {**good, "tau": -1.0},
        {**good, "tau": float("nan")},
        {**good, "whiten": good["whiten"][:1]},
        {**good, "means": "abc"},
        {**good, "factor": 0.0},
        {**good, "factor": float("inf")},
    ]
    for data in bad:
        with pytest.raises(ValueError, match="novelty gate"):
            NoveltyGate.from_json(data)
    with pytest.raises(ValueError, match="does not fit"):
        NoveltyGate.from_json(good, n_features=24)
    with pytest.raises(ValueError, match="positive"):
        NoveltyGate.fit(f, y, factor=0.0)
    with pytest.raises(ValueError, match="finite"):  # the loader would refuse such a gate
        NoveltyGate.fit(f, y, factor=float("inf"))


@pytest.mark.parametrize("factor", [float("inf"), float("nan"), -1.0])
def test_a_bad_gate_factor_is_refused_before_training(factor):
    norm, image, _x, _truth, names = scribbled_scenes(drop_class=4)
    clf = make_classifier("unet", norm, CLASSES, names)
    job = clf.fit([image], TrainConfig(steps=5, seed=0, threads=1, novelty_gate=factor))
    with pytest.raises(ValueError, match=r"novelty gate factor .*must be a finite number >= 0"):
        next(job)  # no training step ran, and no model that cannot be loaded again is made
    assert not clf.trained


@pytest.fixture(scope="module")
def unseen_class():
    """Strokes on four of the five classes of a scene; buildings (4) are painted nowhere."""
    unseen = 4
    norm, image, test_x, truth, names = scribbled_scenes(drop_class=unseen)
    models = {}
    for factor in (0.0, 2.0):
        clf = make_classifier("unet", norm, CLASSES, names)
        # the default's 320 steps: after 80 steps of 8² crops the features do not yet set the
        # unstroked class apart (its share >= 0.95 fell only 0.69 -> 0.63 with the gate)
        cfg = TrainConfig(steps=320, seed=0, threads=1, novelty_gate=factor)
        run_to_end(clf.fit([image], cfg))
        models[factor] = clf
    return models, test_x, truth, unseen


def test_gate_lowers_confidence_on_an_unstroked_class_and_keeps_every_argmax(unseen_class):
    from napari_hitl.core.learning.prediction import predict_normalized

    models, x, truth, unseen = unseen_class
    assert models[0.0].novelty is None and models[2.0].novelty is not None
    preds = {f: run_to_end(predict_normalized(clf, x)) for f, clf in models.items()}
    np.testing.assert_array_equal(preds[0.0].labels, preds[2.0].labels)
    novel, known = truth == unseen, (truth > 0) & (truth != unseen)
    stats = {}
    for f, p in preds.items():
        sure = p.confidence >= 0.95
        wrong = float((p.labels[sure] != truth[sure]).mean())
        stats[f] = (float(sure[novel].mean()), float(sure[known].mean()), wrong)
    # the two models share their weights (same seed, same training; the gate is fitted after
    # it), so every confidence the gate lowered is the gate's doing
    lowered = preds[0.0].confidence - preds[2.0].confidence > 0.01
    touched = (float(lowered[novel].mean()), float(lowered[known].mean()))
    print(f"share >= 0.95 on buildings / the stroked classes, wrong among them: {stats}; "
          f"share the gate lowered on buildings / the stroked classes: {touched}")  # fmt: skip
    # measured with 320 steps of today's 8² crops, seed 0 (seeds 1-3), on an AMD host: buildings
    # 0.48 -> 0.30, ratio 0.62 (0.57, 0.16, 0.76), stroked 0.82 -> 0.71, ratio 0.87 (0.82-0.87),
    # wrong 6.2 % -> 3.1 %, ratio 0.51 (0.28-0.62), the gate lowered 71 % of the buildings
    # against 30 % of the stroked classes (69/39, 88/33, 67/34 %); on an Intel host seeds 0, 1:
    # buildings 0.40 -> 0.05 / 0.46 -> 0.23, stroked 0.75 -> 0.67 / 0.67 -> 0.56, wrong 6.1 % ->
    # 1.1 % / 7.3 % -> 3.5 %. The asserts keep the margins those runs show.
    assert touched[0] > 1.5 * touched[1]
    novel_kept, known_kept = stats[2.0][0] / stats[0.0][0], stats[2.0][1] / stats[0.0][1]
    assert novel_kept < 0.8 and novel_kept < known_kept - 0.05
    assert known_kept > 0.75
    assert stats[2.0][2] < 0.75 * stats[0.0][2]


def test_gated_model_tiles_like_the_whole_image_and_round_trips(unseen_class):
    models, x, _truth, _unseen = unseen_class
    clf = models[2.0]
    x = x[:, :100, :90]
    np.testing.assert_allclose(clf.logits(x, tile=32), clf.logits(x), atol=1e-4)
    blob, config = clf.state()
    again = classifier_from_state(blob, config)
    assert again.novelty is not None and again.novelty.tau == clf.novelty.tau
    np.testing.assert_allclose(again.logits(x), clf.logits(x), rtol=1e-5, atol=1e-5)
    config["novelty"]["whiten"] = config["novelty"]["whiten"][:1]
    with pytest.raises(StoreError, match="novelty gate"):
        classifier_from_state(blob, config)


def test_plain_guide_predicts_what_the_gated_model_predicts(unseen_class):
    """Test-time guiding starts from the model's own prediction, gate included: with no hints
    its confidence is the model's, so a guided push keeps the gate's protection."""
    from napari_hitl.core.hints.guide import ImageGuide
    from napari_hitl.core.learning.prediction import predict_normalized

    models, x, _truth, _unseen = unseen_class
    clf = models[2.0]
    x = x[:, :96, :80]
    plain = run_to_end(predict_normalized(clf, x))
    via_guide = run_to_end(ImageGuide(clf, x).predict_job(guided=False))
    np.testing.assert_allclose(via_guide.probabilities, plain.probabilities, atol=1e-5)
    ungated = run_to_end(predict_normalized(models[0.0], x))
    assert np.abs(ungated.confidence - plain.confidence).max() > 0.05  # the gate did act here
