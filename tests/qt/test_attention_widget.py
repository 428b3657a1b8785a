"""The Explain and guide widget under Xvfb: Grad-CAM and band layers, the bar chart, clicks by
mouse, confirm / next / fine-tune / revert."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from napari.utils.key_bindings import coerce_keybinding

from napari_hitl._napari.names import attention_layer_names
from napari_hitl.core.evaluation.scribbles import sparse_scribbles
from napari_hitl.core.explain.gradcam import Region
from napari_hitl.core.explain.project import BEFORE_GUIDANCE, explain_project_image, load_clicks
from napari_hitl.core.learning.net import TrainConfig
from napari_hitl.core.learning.registry import list_checkpoints
from napari_hitl.core.loop import load_state, predict_project_image, train_project
from napari_hitl.core.progress import run_to_end
from napari_hitl.core.sample.store import build_sample_store
from napari_hitl.core.store import ProjectStore

pytestmark = pytest.mark.gui


@pytest.fixture
def attention(open_dock, tmp_path):
    store = build_sample_store(tmp_path / "p.zarr", shape=(96, 96), n_images=2)
    for name in store.image_names():
        gt = store.read_derived(name, "ground_truth")
        store.write_labels(name, sparse_scribbles(gt, 0.04, seed=0))
    run_to_end(train_project(store, TrainConfig(steps=40)))
    viewer, widget = open_dock(store, "Explain and guide", show=True)
    return viewer, widget, store


def _press(viewer, layer, row, col, button):
    event = SimpleNamespace(
        type="mouse_press", button=button, position=layer.data_to_world([row, col]), modifiers=()
    )
    for cb in list(viewer.mouse_drag_callbacks):
        cb(viewer, event)


def _compute_whole_image(viewer, widget, qtbot, cls, method, wait_idle):
    """Explain ``cls`` over the whole of sample_00 with the widget; its labels layer."""
    lab = viewer.layers["sample_00 labels"]
    viewer.layers.selection.active = lab
    widget.refresh_classes()
    widget.class_combo.setCurrentText(cls)
    widget.region_combo.setCurrentText("whole image")
    widget.method_combo.setCurrentText(method)
    assert widget.compute()
    wait_idle(widget)
    return lab


def test_compute_shows_cam_chart_and_band_map(attention, qtbot, wait_idle):
    viewer, widget, store = attention
    lab = _compute_whole_image(viewer, widget, qtbot, "water", "gradient", wait_idle)
    names = attention_layer_names("sample_00")
    cam = viewer.layers[names["cam"]]
    expected = run_to_end(
        explain_project_image(
            ProjectStore.open(store.path), "sample_00", "water", region=Region(), attribution=None
        )
    )
    np.testing.assert_allclose(cam.data, expected.cam.map, atol=1e-5)
    assert cam.data.shape == lab.data.shape
    np.testing.assert_allclose(cam.scale, lab.scale)
    np.testing.assert_allclose(cam.translate, lab.translate)
    # the chart has one bar per band, the strongest first in the band list
    assert len(widget.chart.bands) == 15 and widget.band_combo.count() == 15
    top = widget.band_combo.currentText()
    band = viewer.layers[names["band"]]
    attr = widget.explanation.attribution
    np.testing.assert_allclose(band.data, attr.maps[attr.band_names.index(top)])
    widget.band_combo.setCurrentText(attr.band_names[3])
    np.testing.assert_allclose(band.data, attr.maps[3])
    # the segment under the cursor (Alt-E): a predicted water segment
    pred = widget.explanation  # keep the whole-image one for comparison
    predicted = run_to_end(predict_project_image(ProjectStore.open(store.path), "sample_00",
                                                 write=False)).labels  # fmt: skip
    water = np.argwhere(predicted == 5)
    r, c = (int(v) for v in water[len(water) // 2])
    viewer.cursor.position = tuple(lab.data_to_world([r, c]))
    widget.region_combo.setCurrentText("segment under the cursor")
    viewer.keymap[coerce_keybinding("Alt-E")](viewer)
    wait_idle(widget)
    seg = widget.explanation
    assert seg is not pred and seg.region.kind == "segment" and seg.region.point == (r, c)
    assert seg.mask[r, c] and (predicted[seg.mask] == 5).all()
    assert seg.mask.sum() < pred.mask.sum()


def test_clicks_confirm_finetune_revert(attention, qtbot, wait_idle):
    viewer, widget, store = attention
    lab = _compute_whole_image(viewer, widget, qtbot, "building", "none", wait_idle)
    state = load_state(ProjectStore.open(store.path))
    # clicks by mouse in click mode: the labels layer stops painting meanwhile
    lab.mode = "paint"
    viewer.keymap[coerce_keybinding("Alt-G")](viewer)
    assert widget.click_mode and lab.mode == "pan_zoom"
    before = lab.data.copy()
    cam = widget.explanation.cam.map
    peak = np.unravel_index(np.argmax(cam), cam.shape)
    _press(viewer, lab, 20, 70, 1)
    _press(viewer, lab, int(peak[0]), int(peak[1]), 2)
    np.testing.assert_array_equal(lab.data, before)  # no paint
    names = attention_layer_names("sample_00")
    pts = viewer.layers[names["clicks"]]
    np.testing.assert_array_equal(pts.data, [[20, 70], list(peak)])
    ignore = viewer.layers[names["ignore"]]
    assert ignore.data[peak] == 1 and ignore.data.sum() < ignore.data.size
    viewer.keymap[coerce_keybinding("Alt-G")](viewer)
    assert not widget.click_mode and lab.mode == "paint"
    # confirm keeps them in the store
    viewer.keymap[coerce_keybinding("Alt-K")](viewer)
    (saved,) = load_clicks(ProjectStore.open(store.path))
    assert saved.confirmed and saved.positive == [(20, 70)] and saved.negative == [tuple(peak)]
    # fine-tune: a new model, the before map kept, the map and prediction refreshed
    widget.steps_spin.setValue(3)
    assert widget.fine_tune()
    wait_idle(widget)
    tuned = load_state(ProjectStore.open(store.path))
    assert tuned.iteration == state.iteration + 1
    assert BEFORE_GUIDANCE in list_checkpoints(ProjectStore.open(store.path))
    np.testing.assert_allclose(viewer.layers[names["before"]].data, cam)
    assert not np.allclose(viewer.layers[names["cam"]].data, cam)
    assert "sample_00 prediction" in viewer.layers
    assert names["prediction_before"] not in viewer.layers  # no prediction was shown before
    assert load_clicks(ProjectStore.open(store.path)) == []  # the round is used up
    assert "distance" in widget.status.text()
    assert widget.fine_tune() is False  # nothing confirmed any more
    # revert: the old model and its map are back
    assert widget.revert()
    wait_idle(widget)
    assert load_state(ProjectStore.open(store.path)).model_hash == state.model_hash
    np.testing.assert_allclose(viewer.layers[names["cam"]].data, cam, atol=1e-5)


def test_candidates_next_and_close(attention, qtbot, wait_idle):
    viewer, widget, _store = attention
    widget.strategy_combo.setCurrentText("entropy")
    assert widget.rank_candidates()
    wait_idle(widget)
    assert sorted(widget.candidates) == [("sample_00", None), ("sample_01", None)]
    viewer.keymap[coerce_keybinding("Alt-X")](viewer)
    wait_idle(widget)
    first = widget.candidates[0][0]
    assert widget.explanation is not None and widget.explanation.image == first
    assert viewer.layers[f"{first} labels"].visible
    viewer.keymap[coerce_keybinding("Alt-X")](viewer)
    wait_idle(widget)
    assert widget.explanation.image == widget.candidates[1][0]
    widget.close()
    assert widget._on_mouse not in viewer.mouse_drag_callbacks
    assert (
        coerce_keybinding("Alt-E") not in viewer.keymap
        or viewer.keymap[coerce_keybinding("Alt-E")] is None
    )
