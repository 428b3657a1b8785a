"""The Learning loop's background prediction into the store: progress, cancel, resume, shown."""

from __future__ import annotations

import numpy as np
import pytest

from napari_hitl._napari.names import result_layer_names
from napari_hitl.core.evaluation.scribbles import sparse_scribbles
from napari_hitl.core.learning.net import TrainConfig
from napari_hitl.core.loop import load_state, stored_prediction, train_project
from napari_hitl.core.progress import run_to_end
from napari_hitl.core.sample.store import build_sample_store
from napari_hitl.core.store import ProjectStore

pytestmark = pytest.mark.gui


def test_background_prediction_cancel_resume_and_show(open_dock, tmp_path, qtbot):
    store = build_sample_store(tmp_path / "p.zarr", shape=(256, 256))
    gt = store.read_derived("sample", "ground_truth")
    store.write_labels("sample", sparse_scribbles(gt, 0.03, seed=0))
    run_to_end(train_project(store, TrainConfig(steps=25)))
    viewer, loop = open_dock(store, "Learning loop")
    bg = loop.background

    # cancel after the first block: the run stops, keeps its blocks, and says it will resume
    assert bg.start(chunk=64)
    assert bg.button.text() == "Cancel prediction"
    qtbot.waitUntil(lambda: bg.progress.value() >= 1, timeout=60_000)
    bg.start_or_cancel()
    qtbot.waitUntil(lambda: not bg.busy(), timeout=60_000)
    assert "resumes" in loop.status.text()
    assert bg.button.text() == "Predict into store"
    assert loop.train_button.isEnabled()  # the loop's own buttons never waited for it

    assert bg.start(chunk=64)
    qtbot.waitUntil(lambda: not bg.busy(), timeout=120_000)
    report = bg.last_report
    assert report is not None and report.skipped >= 1
    assert report.skipped + report.computed == report.blocks == 16
    assert "Stored the prediction of sample" in loop.status.text()
    stored = stored_prediction(ProjectStore.open(store.path), "sample", load_state(store))
    names = result_layer_names("sample")
    np.testing.assert_array_equal(viewer.layers[names["prediction"]].data, stored["prediction"])
    loop.threshold_slider.setValue(60)
    expected = loop.accepted_mask()  # the threshold preview works on it
    assert loop.add_predictions() == int(expected.sum()) > 0
