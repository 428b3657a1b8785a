"""Training on awkward labels and bands: a clear one-line error or a documented graceful run."""

from __future__ import annotations

import numpy as np
import pytest

from napari_hitl.core.io.rasters import Raster
from napari_hitl.core.learning.data import TrainingDataError
from napari_hitl.core.learning.net import TrainConfig
from napari_hitl.core.loop import train_project
from napari_hitl.core.progress import run_to_end
from napari_hitl.core.store import ProjectStore, add_image
from napari_hitl.core.store.classes import make_classes

N = 40
FAST = TrainConfig(steps=3, warm_steps=2)


def _store(tmp_path, bands: np.ndarray, labels: np.ndarray) -> ProjectStore:
    store = ProjectStore.create(tmp_path / "s.zarr", classes=make_classes(["a", "b"], None))
    add_image(store, Raster(bands, "CYX", [f"b{i}" for i in range(len(bands))]), "img")
    store.write_labels("img", labels)
    return store


def _data():
    bands = np.random.default_rng(0).random((3, N, N)).astype(np.float32)
    labels = np.zeros((N, N), np.uint16)
    labels[5:9, 5:20] = 1
    labels[28:32, 5:20] = 2
    return bands, labels


def test_a_band_all_nan_says_every_labeled_pixel_is_invalid(tmp_path):
    bands, labels = _data()
    bands[2] = np.nan
    store = _store(tmp_path, bands, labels)
    with pytest.raises(TrainingDataError, match="every labeled pixel is invalid") as err:
        run_to_end(train_project(store, FAST))
    assert "\n" not in str(err.value)
    assert store.labels("img").sum() == labels.sum()  # nothing lost


def test_one_labeled_class_is_refused(tmp_path):
    bands, labels = _data()
    labels[labels == 2] = 0
    with pytest.raises(TrainingDataError, match="only one class is labeled"):
        run_to_end(train_project(_store(tmp_path, bands, labels), FAST))


def test_a_constant_band_and_single_pixel_strokes_train(tmp_path):
    bands, labels = _data()
    bands[1] = 0.5  # zero variance: normalized to a constant, not NaN
    single = np.zeros_like(labels)
    single[6, 6], single[30, 30] = 1, 2
    report, _state = run_to_end(train_project(_store(tmp_path, bands, single), FAST))
    assert report.holdout_pixels == 0 and report.temperature == 1.0  # too few to hold out
    assert report.class_pixels == [1, 1] and np.isfinite(report.final_loss)
