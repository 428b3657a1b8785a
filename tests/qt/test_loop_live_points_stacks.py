"""The loop widget's live mode (real worker threads, painting while it trains), points, the
uncertainty choice, band subsets, Z stacks and closing napari mid-job."""

from __future__ import annotations

import numpy as np
import pytest

from napari_hitl._napari.names import result_layer_names
from napari_hitl.core.evaluation.scribbles import sparse_scribbles
from napari_hitl.core.io.rasters import Raster
from napari_hitl.core.learning.registry import list_checkpoints
from napari_hitl.core.loop import load_state
from napari_hitl.core.loop.live import LiveSettings
from napari_hitl.core.sample.scene import make_sample_scene
from napari_hitl.core.sample.store import build_sample_store
from napari_hitl.core.store import PROVENANCE_HUMAN, ProjectStore, add_image
from napari_hitl.core.store.classes import make_classes

pytestmark = pytest.mark.gui


@pytest.fixture
def sample(open_dock, tmp_path):
    store = build_sample_store(tmp_path / "p.zarr", shape=(128, 128))
    # shown: the canvas has a real size (visible box)
    viewer, loop = open_dock(store, "Learning loop", show=True)
    return viewer, loop, store, store.read_derived("sample", "ground_truth")


def test_live_mode_trains_while_the_person_paints(sample, qtbot):
    viewer, loop, store, gt = sample
    loop.live.settings = LiveSettings(round_steps=4, idle_rounds=50)
    layer = viewer.layers["sample labels"]
    layer.data = sparse_scribbles(gt, 0.01, seed=0)
    loop.live_check.setChecked(True)  # Alt-L does the same
    assert loop.live.active and loop.jobs.name == "Live"
    assert not loop.infer_button.isEnabled() and not loop.add_button.isEnabled()
    qtbot.waitUntil(lambda: loop.live.rounds >= 1, timeout=120_000)
    first = loop.live.last_update
    assert first.prediction is not None
    names = result_layer_names("sample")
    r0, r1, c0, c1 = first.box
    shown = viewer.layers[names["prediction"]].data[r0:r1, c0:c1]
    np.testing.assert_array_equal(shown, first.prediction.labels)  # the view, in place
    # paint real brush strokes while the worker trains
    layer.selected_label = int(gt[100, 100])
    version = loop.live.inbox.version
    for col in range(90, 110):
        assert loop.jobs.busy
        layer.paint((100, col), layer.selected_label)
    # each stroke reaches the trainer (on the next turn of the event loop)
    qtbot.waitUntil(lambda: loop.live.inbox.version >= version + 20, timeout=10_000)
    saved = ProjectStore.open(store.path)
    assert (saved.labels("sample")[100, 90:110] == gt[100, 100]).all()  # saved at once
    assert (saved.provenance("sample")[100, 90:110] == PROVENANCE_HUMAN).all()
    latest = loop.live.inbox.version
    qtbot.waitUntil(lambda: loop.live.last_update.labels_version == latest, timeout=60_000)
    # switching live off saves the model, then the whole image is predicted
    loop.live_check.setChecked(False)
    qtbot.waitUntil(lambda: not loop.jobs.busy and not loop.live.active, timeout=120_000)
    qtbot.waitUntil(lambda: not loop.jobs.busy and loop.jobs.name == "Inference", timeout=120_000)
    assert load_state(ProjectStore.open(store.path)).iteration == 1
    assert loop.prediction.labels.shape == (128, 128) and (loop.prediction.labels > 0).all()
    loop.threshold_slider.setValue(70)
    assert loop.add_predictions() > 0  # the live model's prediction can be pushed


def test_update_points_uncertainty_and_bands(sample, qtbot):
    viewer, loop, store, gt = sample
    layer = viewer.layers["sample labels"]
    painted = sparse_scribbles(gt, 0.02, seed=3)
    layer.data = painted
    # train on three bands only
    for i in range(loop.bands_list.count()):
        item = loop.bands_list.item(i)
        if item.text() not in ("B04", "B03", "B02"):
            item.setCheckState(item.checkState().__class__.Unchecked)
    assert loop.model_bands() == ["B02", "B03", "B04"] or sorted(loop.model_bands()) == [
        "B02",
        "B03",
        "B04",
    ]
    assert loop.live.start(once=True)  # the Update button
    # one round, the model saved, then the image predicted so that Add predictions can use it
    qtbot.waitUntil(lambda: not loop.jobs.busy and loop.jobs.name == "Inference", timeout=120_000)
    state = load_state(ProjectStore.open(store.path))
    assert sorted(state.classifier.normalization.band_names) == ["B02", "B03", "B04"]
    assert not loop.live_check.isChecked() and loop.live.rounds == 1
    names = result_layer_names("sample")
    conf = viewer.layers[names["confidence"]]
    assert conf.colorbar.visible  # a legend for the confidence colours
    assert loop.image_combo.findText(names["confidence"]) < 0  # results are not new images
    unc = viewer.layers[names["uncertainty"]]
    entropy = np.array(unc.data)
    loop.uncertainty_combo.setCurrentText("1 − margin")
    assert not np.allclose(np.array(unc.data), entropy)
    np.testing.assert_allclose(unc.data, 1 - loop.prediction.margin, atol=1e-6)
    loop.threshold_slider.setValue(60)
    pushed = loop.add_predictions()
    assert pushed > 0 and loop.undo() == pushed  # Update's model can be pushed from
    # points: a positive point of a class labels a small disk; a human stroke stays
    points = loop.points.add_layer()
    assert points.mode == "add"
    value = store.classes[1].value
    layer.selected_label = value
    free = np.argwhere(sparse_scribbles(gt, 0.02, seed=3) == 0)
    r, c = (int(v) for v in free[len(free) // 2])
    points.add([r, c])
    human = painted > 0
    result = loop.points.apply()
    assert result is not None and result.labeled > 0
    labels = np.asarray(layer.data)
    assert labels[r, c] == value
    np.testing.assert_array_equal(labels[human], painted[human])
    assert len(points.data) == 0  # applied points are cleared
    assert ProjectStore.open(store.path).labels("sample")[r, c] == value


def test_stack_predicts_a_slice_or_the_whole_stack(open_dock, tmp_path, qtbot):
    scenes = [make_sample_scene((64, 64), seed) for seed in range(3)]
    store = ProjectStore.create(
        tmp_path / "s.zarr", classes=make_classes(scenes[0].class_names, scenes[0].class_colors)
    )
    add_image(
        store,
        Raster(np.stack([s.bands for s in scenes], axis=1), "CZYX", scenes[0].band_names),
        "vol",
    )
    gt = np.stack([s.ground_truth for s in scenes])
    viewer, loop = open_dock(store, "Learning loop")
    layer = viewer.layers["vol labels"]
    painted = np.zeros(gt.shape, np.uint16)
    painted[2] = sparse_scribbles(gt[2], 0.05, seed=0)  # labels on the last slice only
    layer.data = painted
    assert loop.stack_combo.isEnabled()
    z_axis = viewer.dims.ndim - 3  # the bands layer adds a band axis in front
    viewer.dims.set_current_step(z_axis, 0)
    assert loop.plane_index() == 0
    from napari_hitl.core.learning.net import TrainConfig

    assert loop.train(TrainConfig(steps=150))
    qtbot.waitUntil(lambda: not loop.jobs.busy, timeout=120_000)
    assert loop.infer()  # the current slice (0), which nobody labeled
    qtbot.waitUntil(lambda: not loop.jobs.busy and loop.prediction is not None, timeout=120_000)
    pred_layer = viewer.layers[result_layer_names("vol")["prediction"]]
    assert pred_layer.data.shape == (3, 64, 64)
    assert (pred_layer.data[0] > 0).all() and not pred_layer.data[1].any()
    majority = np.bincount(gt[0].ravel()).max() / gt[0].size
    assert (pred_layer.data[0] == gt[0]).mean() > majority + 0.05  # learnt from slice 2
    loop.threshold_slider.setValue(60)
    added = loop.add_predictions()
    labels = np.asarray(layer.data)
    assert added > 0 and (labels[0] > 0).sum() == added and not labels[1].any()
    np.testing.assert_array_equal(labels[2], painted[2])
    loop.stack_combo.setCurrentIndex(1)  # whole stack
    assert loop.infer()
    qtbot.waitUntil(lambda: not loop.jobs.busy, timeout=120_000)
    assert (pred_layer.data > 0).all()
    viewer.dims.set_current_step(z_axis, 1)
    assert loop.preview.index == 1  # the preview follows the slice on show
    assert loop.add_predictions() > 0 and (np.asarray(layer.data)[1] > 0).any()
    assert loop.undo() > 0 and not np.asarray(layer.data)[1].any()


def test_closing_napari_mid_job_cancels(open_dock, tmp_path, qtbot):
    store = build_sample_store(tmp_path / "p.zarr", shape=(96, 96))
    gt = store.read_derived("sample", "ground_truth")
    viewer, loop = open_dock(store, "Learning loop", show=True)
    viewer.layers["sample labels"].data = sparse_scribbles(gt, 0.03, seed=0)
    from napari_hitl.core.learning.net import TrainConfig

    assert loop.train(TrainConfig(steps=100_000))
    qtbot.waitUntil(lambda: loop.progress.value() > 0, timeout=60_000)
    viewer.close()
    assert not loop.jobs.busy  # cancelled and waited for
    assert list_checkpoints(ProjectStore.open(store.path)) == []


def test_strokes_are_saved_without_pressing_anything(open_dock, tmp_path, qtbot):
    """Painting, then closing napari, loses nothing: strokes reach the store by themselves."""
    store = build_sample_store(tmp_path / "p.zarr", shape=(64, 64))
    viewer, _loop = open_dock(store, "Learning loop")
    layer = viewer.layers["sample labels"]
    layer.paint((10, 10), 2)  # a brush stroke
    qtbot.waitUntil(
        lambda: ProjectStore.open(store.path).labels("sample")[10, 10] == 2, timeout=5000
    )
    layer.paint((30, 30), 3)
    viewer.close()  # at once: the pending save happens on close
    reopened = ProjectStore.open(store.path)
    assert reopened.labels("sample")[30, 30] == 3
    assert reopened.provenance("sample")[30, 30] == PROVENANCE_HUMAN


@pytest.mark.parametrize("rgb", [False, True])
def test_label_any_image_layer(make_napari_viewer, tmp_path, monkeypatch, qtbot, rgb):
    """An image opened some other way gets a project (and a labels layer); reopening resumes."""
    monkeypatch.setenv("HOME", str(tmp_path))
    rng = np.random.default_rng(0)
    data = (rng.random((40, 50, 3)) * 255).astype(np.uint8) if rgb else rng.random((4, 40, 50))
    viewer = make_napari_viewer()
    viewer.add_image(data, name="my scan", rgb=rgb)
    _dock, loop = viewer.window.add_plugin_dock_widget("napari-hitl", "Learning loop")
    assert loop.image_combo.currentText() == "my scan" and loop.labels_combo.count() == 0
    assert loop.start_labeling()
    qtbot.waitUntil(lambda: not loop.jobs.busy, timeout=60_000)
    assert loop.labels_combo.currentText() == "my_scan labels"
    layer = viewer.layers["my_scan labels"]
    assert layer.data.shape == (40, 50)
    path = tmp_path / "napari-hitl" / "my_scan.zarr"
    store = ProjectStore.open(path)
    assert store.image_info("my_scan").shape == (3 if rgb else 4, 40, 50)
    assert [c.name for c in store.classes] == ["class 1", "class 2"]
    layer.data = np.pad(np.ones((5, 5), np.uint16), ((0, 35), (0, 45)))
    assert loop.save_labels_now() == 25
    # the same layer in a new session: the project is reused, labels and all
    viewer2 = make_napari_viewer()
    viewer2.add_image(data, name="my scan", rgb=rgb)
    _dock, loop2 = viewer2.window.add_plugin_dock_widget("napari-hitl", "Learning loop")
    assert loop2.start_labeling("my scan")
    qtbot.waitUntil(lambda: not loop2.jobs.busy, timeout=60_000)
    assert int(np.asarray(viewer2.layers["my_scan labels"].data).sum()) == 25
