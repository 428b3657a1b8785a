"""The loop on a project store: train → predict → push → undo, checkpoints, and refusals."""

from __future__ import annotations

import numpy as np
import pytest

from napari_hitl.cli import main
from napari_hitl.core.errors import StaleDataError
from napari_hitl.core.evaluation.scribbles import sparse_scribbles
from napari_hitl.core.io.rasters import Raster
from napari_hitl.core.learning.data import IncompatibleBandsError, TrainingDataError
from napari_hitl.core.learning.net import TrainConfig
from napari_hitl.core.learning.registry import list_checkpoints, load_checkpoint
from napari_hitl.core.loop import (
    load_state,
    predict_project_image,
    push_project_image,
    require_state,
    train_project,
)
from napari_hitl.core.loop.accept import store_undo
from napari_hitl.core.progress import run_to_end
from napari_hitl.core.sample.store import build_sample_store
from napari_hitl.core.store import PROVENANCE_HUMAN, ProjectStore, add_image, machine_provenance

FAST = TrainConfig(steps=30, warm_steps=10)


@pytest.fixture
def project(tmp_path):
    store = build_sample_store(tmp_path / "p.zarr", shape=(128, 128), n_images=2)
    gt = store.read_derived("sample_00", "ground_truth")
    store.write_labels("sample_00", sparse_scribbles(gt, 0.03, seed=0))
    return store


def test_train_predict_push_undo(project):
    report, state = run_to_end(train_project(project, FAST))
    assert state.iteration == 1 and not report.warm_start
    assert list_checkpoints(project) == ["latest"]
    human_before = project.labels("sample_00")
    pred = run_to_end(predict_project_image(project, "sample_00"))
    assert pred.labels.shape == (128, 128)
    assert set(project.derived_keys("sample_00")) >= {
        "prediction",
        "confidence",
        "margin",
        "entropy",
    }
    rec = push_project_image(project, "sample_00", threshold=0.5)
    labels, prov = project.labels("sample_00"), project.provenance("sample_00")
    human = human_before > 0
    assert np.array_equal(labels[human], human_before[human])  # human labels untouched
    assert (prov[human] == PROVENANCE_HUMAN).all()
    assert rec.count == int((prov == machine_provenance(1)).sum()) > 0
    # a second iteration warm-starts and signs its predictions with the new model
    report2, state2 = run_to_end(train_project(project, FAST))
    assert report2.warm_start and state2.iteration == 2 and state2.model_hash != state.model_hash
    with pytest.raises(StaleDataError, match="out of date"):
        push_project_image(project, "sample_00")  # prediction came from the previous model
    assert store_undo(project, "sample_00") == rec.count
    np.testing.assert_array_equal(project.labels("sample_00"), human_before)


def test_checkpoint_round_trip_and_band_mismatch(project, tmp_path):
    run_to_end(train_project(project, FAST))
    clf = load_checkpoint(project, "latest")
    assert clf.normalization.band_names == project.image_info("sample_00").band_names
    assert list(clf.class_names) == ["vegetation", "ground", "road", "building", "water"]
    x = np.asarray(project.image("sample_01")[...])
    other = Raster(x[:5], "CYX", ["a", "b", "c", "d", "e"])
    add_image(project, other, "five_bands")
    with pytest.raises(IncompatibleBandsError, match="trained on bands"):
        run_to_end(predict_project_image(project, "five_bands"))
    with pytest.raises(IncompatibleBandsError, match="different bands"):
        run_to_end(train_project(project, FAST, fresh=True))


def test_refusals(tmp_path):
    store = build_sample_store(tmp_path / "q.zarr", shape=(64, 64))
    with pytest.raises(TrainingDataError, match="no labels yet"):
        run_to_end(train_project(store, FAST))
    labels = np.zeros((64, 64), np.uint16)
    labels[:4, :4] = 1
    store.write_labels("sample", labels)
    with pytest.raises(TrainingDataError, match="only one class"):
        run_to_end(train_project(store, FAST))
    assert load_state(store) is None
    with pytest.raises(TrainingDataError, match="train first"):
        push_project_image(store, "sample")
    with pytest.raises(TrainingDataError, match=r"^no model yet: paint and Train$"):
        require_state(store, "paint and Train")


def test_cli_loop(project, capsys):
    path = str(project.path)
    assert main(["train", path, "--steps", "20"]) == 0
    assert main(["predict", path]) == 0
    assert main(["push", path, "--image", "sample_00", "--threshold", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "trained unet (iteration 1, fresh)" in out and "added" in out
    assert main(["undo", path, "--image", "sample_00", "--clear-machine"]) == 0
    assert (ProjectStore.open(path).provenance("sample_00") <= PROVENANCE_HUMAN).all()
