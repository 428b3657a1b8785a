"""The ``unet+rf`` ensemble: mixed calibrated probabilities, a safe checkpoint, tiles == whole."""

from __future__ import annotations

import numpy as np
import pytest

from napari_hitl.core.errors import StoreError
from napari_hitl.core.learning.data import LabeledImage, Normalization
from napari_hitl.core.learning.ensemble import EnsembleClassifier
from napari_hitl.core.learning.net import TrainConfig
from napari_hitl.core.learning.prediction import softmax
from napari_hitl.core.learning.registry import (
    classifier_from_state,
    load_checkpoint,
    make_classifier,
    save_checkpoint,
)
from napari_hitl.core.progress import run_to_end
from napari_hitl.core.sample.store import build_sample_store


def _data(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, LabeledImage]:
    """Two classes told apart by brightness, plus noise; strokes in four squares."""
    truth = np.zeros((96, 96), np.int64)
    truth[:, 48:] = 1
    x = (truth[None] * 1.5 + rng.standard_normal((2, 96, 96)) * 0.6).astype(np.float32)
    target = np.full((96, 96), -1)
    for r, c in ((10, 10), (60, 20), (10, 70), (60, 75)):
        target[r : r + 12, c : c + 12] = truth[r : r + 12, c : c + 12]
    return x, truth, LabeledImage("a", x, target, (target >= 0).astype(np.float32))


@pytest.fixture
def trained(rng):
    x, truth, image = _data(rng)
    norm = Normalization(["b0", "b1"], [0.0, 0.0], [1.0, 1.0])
    clf = make_classifier("unet+rf", norm, [1, 2], ["dark", "bright"])
    for m in clf.members:
        if m.kind == "rf":
            m.n_estimators = 10
    clf.last_report = run_to_end(
        clf.fit([image], TrainConfig(steps=30, threads=1, holdout_fraction=0.2))
    )
    return clf, x, truth


def test_the_ensemble_averages_its_members_calibrated_probabilities(trained):
    clf, x, truth = trained
    assert isinstance(clf, EnsembleClassifier) and clf.kind == "unet+rf" and clf.trained
    members = [softmax(m.logits(x), m.temperature) for m in clf.members]
    p = np.exp(clf.logits(x))
    w = clf.weights
    assert w[0] + w[1] == pytest.approx(1.0)
    mixed = w[0] * members[0] + w[1] * members[1]
    np.testing.assert_allclose(p, np.clip(mixed, 1e-6, 1), atol=1e-5)
    accuracy = float(np.mean(p.argmax(0) == truth))
    assert accuracy > 0.9  # the two halves are told apart away from the strokes
    assert clf.last_report.holdout_accuracy is not None


def test_ensemble_checkpoint_round_trip_and_no_pickle(trained, tmp_path):
    clf, x, _ = trained
    blob, config = clf.state()
    again = classifier_from_state(blob, config)
    np.testing.assert_array_equal(again.logits(x), clf.logits(x))
    store = build_sample_store(tmp_path / "p.zarr", shape=(32, 32))
    save_checkpoint(store, "ens", clf)
    np.testing.assert_array_equal(load_checkpoint(store, "ens").logits(x), clf.logits(x))
    import io

    buf = io.BytesIO()
    np.savez(buf, member0=np.array([object()], dtype=object), member1=np.zeros(3, np.uint8))
    with pytest.raises(StoreError, match="ensemble cannot be read"):
        EnsembleClassifier.from_state(buf.getvalue(), config, classifier_from_state)


def test_ensemble_windows_equal_the_whole_image(trained):
    clf, x, _ = trained
    whole = clf.logits(x)
    h = clf.halo
    padded = np.pad(x, ((0, 0), (h, h), (h, h)), mode="reflect")
    window = padded[:, 16 : 16 + 32 + 2 * h, 16 : 16 + 32 + 2 * h]
    part = clf.window_logits(window)
    np.testing.assert_allclose(part, whole[:, 16:48, 16:48], atol=2e-3)


def test_bad_ensemble_names_are_refused():
    norm = Normalization(["b0"], [0.0], [1.0])
    for bad in ("unet+", "unet+unet", "unet+svm"):
        with pytest.raises(ValueError, match=r"ensemble|unknown model"):
            make_classifier(bad, norm, [1, 2], ["a", "b"])


def test_train_predict_push_with_the_ensemble_from_the_command_line(tmp_path, capsys):
    from napari_hitl.cli import main
    from napari_hitl.core.evaluation.scribbles import sparse_scribbles
    from napari_hitl.core.loop import load_state
    from napari_hitl.core.store import ProjectStore

    store = build_sample_store(tmp_path / "p.zarr", shape=(64, 64))
    gt = store.read_derived("sample", "ground_truth")
    scribbles = sparse_scribbles(gt, 0.05, seed=0)
    store.write_labels("sample", scribbles)
    path = str(store.path)
    assert main(["train", path, "--model", "unet+rf", "--steps", "10", "--threads", "1"]) == 0
    assert "unet+rf" in capsys.readouterr().out
    assert main(["predict", path]) == 0
    assert main(["push", path, "--threshold", "0.5"]) == 0
    state = load_state(ProjectStore.open(path))
    assert state is not None and state.classifier.kind == "unet+rf"
    labels = ProjectStore.open(path).labels("sample")
    assert (labels[scribbles > 0] == scribbles[scribbles > 0]).all()
    assert (labels > 0).sum() > (scribbles > 0).sum()  # the push added machine labels
    assert main(["train", path, "--model", "unet+rf", "--steps", "10", "--threads", "1"]) == 0
    assert load_state(ProjectStore.open(path)).iteration == 2  # the ensemble warm-starts


class _OneClass:
    """A member that calls every pixel class 0, confidently (the eo-learn forest's failure)."""

    kind = "one-class"
    halo = 0
    default_tile = 512
    temperature = 1.0

    def __init__(self, norm: Normalization) -> None:
        self.normalization, self.class_values, self.class_names = norm, [1, 2], ["a", "b"]
        self.trained = False

    def fit(self, images, config, cancel=None):
        from napari_hitl.core.learning.net import TrainReport

        self.trained = True
        yield from ()
        return TrainReport(1, 0.0, 0.0, [1, 1], 0, 1.0)

    def logits_job(self, x, tile=512, cancel=None):
        z = np.zeros((2, *x.shape[1:]), np.float32)
        z[0] = 6.0
        yield from ()
        return z

    def logits(self, x, tile=512):
        return run_to_end(self.logits_job(x))


@pytest.mark.parametrize("weighting", ["fit", "equal"])
def test_fitted_weights_discount_a_confidently_wrong_member(rng, weighting):
    x, truth, image = _data(rng)
    norm = Normalization(["b0", "b1"], [0.0, 0.0], [1.0, 1.0])
    good = make_classifier("unet", norm, [1, 2], ["a", "b"])
    clf = EnsembleClassifier([good, _OneClass(norm)], weighting)
    run_to_end(clf.fit([image], TrainConfig(steps=30, threads=1, holdout_fraction=0.2)))
    accuracy = float(np.mean(clf.logits(x).argmax(0) == truth))
    alone = float(np.mean(good.logits(x).argmax(0) == truth))
    if weighting == "fit":
        assert clf.weights[1] <= 0.1  # the held-out strokes of class b expose the bad member
        assert accuracy >= alone - 0.01
    else:
        assert clf.weights == [0.5, 0.5]
        assert accuracy < alone - 0.2  # averaged, it drags half the image to class a
