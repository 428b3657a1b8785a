"""The Learning-loop widget in a real viewer: paint → train → infer → threshold → add → undo,
with real worker threads."""

from __future__ import annotations

import numpy as np
import pytest

from napari_hitl._napari.names import result_layer_names
from napari_hitl.core.evaluation.scribbles import sparse_scribbles
from napari_hitl.core.learning.net import TrainConfig
from napari_hitl.core.sample.store import build_sample_store
from napari_hitl.core.store import PROVENANCE_HUMAN, ProjectStore, machine_provenance

pytestmark = pytest.mark.gui


@pytest.fixture
def viewer_with_project(open_dock, tmp_path):
    store = build_sample_store(tmp_path / "p.zarr", shape=(128, 128))
    viewer, loop = open_dock(store, "Learning loop")
    return viewer, loop, store


def test_paint_train_infer_threshold_add_undo(viewer_with_project, qtbot):
    viewer, loop, store = viewer_with_project
    assert loop.labels_combo.currentText() == "sample labels"
    layer = viewer.layers["sample labels"]
    gt = store.read_derived("sample", "ground_truth")
    painted = sparse_scribbles(gt, 0.03, seed=1)
    layer.data = painted  # the person paints
    assert loop.train(TrainConfig(steps=25))
    assert loop.train_button.text() == "Cancel" and not loop.infer_button.isEnabled()
    qtbot.waitUntil(lambda: not loop.jobs.busy, timeout=120_000)
    assert "iteration 1" in loop.status.text()
    saved = ProjectStore.open(store.path)
    np.testing.assert_array_equal(saved.labels("sample"), painted)  # painted labels persisted
    assert loop.infer()
    qtbot.waitUntil(lambda: not loop.jobs.busy, timeout=120_000)
    names = result_layer_names("sample")
    for key in ("prediction", "confidence", "uncertainty", "accepted"):
        assert names[key] in viewer.layers
    assert viewer.layers[names["confidence"]].scale.tolist() == layer.scale.tolist()
    # the slider updates the preview immediately, without inference
    loop.threshold_slider.setValue(99)
    strict = int((viewer.layers[names["accepted"]].data > 0).sum())
    loop.threshold_slider.setValue(60)
    loose = int((viewer.layers[names["accepted"]].data > 0).sum())
    assert loose > strict
    expected = loop.accepted_mask()
    added = loop.add_predictions()
    assert added == int(expected.sum()) > 0
    labels = np.asarray(layer.data)
    human = painted > 0
    np.testing.assert_array_equal(labels[human], painted[human])  # human labels preserved
    prov = ProjectStore.open(store.path).provenance("sample")
    assert (prov[human] == PROVENANCE_HUMAN).all()
    assert int((prov == machine_provenance(1)).sum()) == added
    assert loop.undo() == added
    np.testing.assert_array_equal(np.asarray(layer.data), painted)  # undo exact
    assert loop.undo() == 0 and "Nothing to undo" in loop.status.text()
    assert loop.add_predictions() == added
    assert loop.clear_machine() == added  # clear machine labels: back to the human strokes
    np.testing.assert_array_equal(np.asarray(layer.data), painted)
    assert "sample labels" in viewer.layers and "vegetation" in loop.areas.text()


def test_cancel_training_and_clear_errors(viewer_with_project, qtbot):
    viewer, loop, store = viewer_with_project
    assert not loop.train()  # nothing painted yet → a clear message, no job
    assert "no labels yet" in loop.status.text()
    assert not loop.infer() and "no model yet" in loop.status.text()
    gt = store.read_derived("sample", "ground_truth")
    viewer.layers["sample labels"].data = sparse_scribbles(gt, 0.03, seed=2)
    assert loop.train(TrainConfig(steps=5000))
    loop._train_or_cancel()  # the Train button is Cancel now
    qtbot.waitUntil(lambda: not loop.jobs.busy, timeout=60_000)
    assert "cancelled" in loop.status.text()
    assert loop.train_button.text() == "Train"


def test_shortcuts_region_and_class_keys(viewer_with_project, qtbot):
    """Alt-shortcuts drive the loop; a drawn rectangle limits what Add predictions adds."""
    from napari.utils.key_bindings import coerce_keybinding

    viewer, loop, store = viewer_with_project
    layer = viewer.layers["sample labels"]
    gt = store.read_derived("sample", "ground_truth")
    painted = sparse_scribbles(gt, 0.03, seed=1)
    layer.data = painted

    def press(key: str) -> None:
        viewer.keymap[coerce_keybinding(key)](viewer)

    press("Alt-3")  # paint with the 3rd class of the list
    assert layer.selected_label == store.classes[2].value and layer.mode == "paint"
    loop.train_button.setEnabled(True)
    press("Alt-T")  # Train
    assert loop.jobs.busy
    qtbot.waitUntil(lambda: not loop.jobs.busy, timeout=120_000)
    press("Alt-I")  # Infer & filter
    qtbot.waitUntil(lambda: not loop.jobs.busy and loop.prediction is not None, timeout=120_000)
    loop.threshold_slider.setValue(60)
    everywhere = loop.accepted_mask()
    assert loop.region_box() is None
    loop.draw_region()
    region = viewer.layers[result_layer_names("sample")["region"]]
    assert region.mode == "add_rectangle"
    region.add_rectangles(np.array([[10, 20], [60, 90]]))  # rows 10–60, columns 20–90
    assert loop.region_box() == (10, 60, 20, 90)
    inside = loop.accepted_mask()
    assert inside.sum() < everywhere.sum()
    assert not inside[:10].any() and not inside[60:].any() and not inside[:, 90:].any()
    press("Alt-A")  # Add predictions: only inside the rectangle
    added = (np.asarray(layer.data) > 0) & (painted == 0)
    assert added.sum() == inside.sum() > 0 and not added[:10].any()
    press("Alt-U")  # Undo
    np.testing.assert_array_equal(np.asarray(layer.data), painted)
    loop.close()
    assert coerce_keybinding("Alt-T") not in viewer.keymap  # shortcuts released


def test_history_shows_on_open_and_after_train(make_napari_viewer, tmp_path, qtbot):
    store = build_sample_store(tmp_path / "h.zarr", shape=(96, 96))
    store.append_history(
        {"train": 1, "iteration": 1, "human_pixels": 7, "human_strokes": 2,
         "labeled_fraction": 0.25, "machine_fraction": 0.0, "holdout_accuracy": None}
    )  # fmt: skip
    viewer = make_napari_viewer()
    _dock, project = viewer.window.add_plugin_dock_widget("napari-hitl", "Project")
    project.open_store(store.path)
    _dock, loop = viewer.window.add_plugin_dock_widget("napari-hitl", "Learning loop")
    text = loop.history_label.text()
    assert "#1 it 1: 7 px / 2 strokes" in text and "labeled 25.0%" in text  # loaded on opening
    gt = store.read_derived("sample", "ground_truth")
    viewer.layers["sample labels"].data = sparse_scribbles(gt, 0.03, seed=3)
    assert loop.train(TrainConfig(steps=10))
    qtbot.waitUntil(lambda: not loop.jobs.busy, timeout=120_000)
    rec = ProjectStore.open(store.path).history()[-1]
    assert rec["train"] == 2
    lines = loop.history_label.text().split("<br>")
    assert len(lines) == 3 and lines[-1].startswith(
        f"#2 it 1: {rec['human_pixels']} px / {rec['human_strokes']} strokes"
    )


def test_a_stale_layer_never_overwrites_a_push_or_an_undo_made_elsewhere(
    viewer_with_project, qtbot
):
    from napari_hitl.core.loop.accept import store_push, store_undo

    viewer, loop, store = viewer_with_project
    layer = viewer.layers["sample labels"]
    other = ProjectStore.open(store.path, "a")  # `napari-hitl push` in a terminal
    pushed = np.zeros((128, 128), bool)
    pushed[64:, :] = True
    store_push(other, "sample", np.full((128, 128), 2, np.uint16), pushed, 1)
    stroke = np.asarray(layer.data).copy()
    stroke[5:8, 5:60] = 1  # the person paints on the layer loaded before the push
    layer.data = stroke
    assert loop.save_labels_now() == 3 * 55
    saved = ProjectStore.open(store.path)
    assert (saved.labels("sample")[64:] == 2).all()  # the push is kept, not erased
    assert (saved.provenance("sample")[64:] == machine_provenance(1)).all()
    assert (np.asarray(layer.data)[64:] == 2).all()  # and the layer now shows it
    assert store_undo(other, "sample") == 64 * 128  # `napari-hitl undo` in a terminal
    again = np.asarray(layer.data).copy()
    again[10:12, 5:60] = 1
    layer.data = again
    assert loop.save_labels_now() == 2 * 55
    saved = ProjectStore.open(store.path)
    assert not (saved.labels("sample")[64:]).any()  # the undone labels did not come back
    assert (saved.provenance("sample") == PROVENANCE_HUMAN).sum() == 5 * 55
    assert not np.asarray(layer.data)[64:].any()


def test_the_ensemble_model_trains_and_infers_from_the_widget(viewer_with_project, qtbot):
    viewer, loop, store = viewer_with_project
    layer = viewer.layers["sample labels"]
    layer.data = sparse_scribbles(store.read_derived("sample", "ground_truth"), 0.03, seed=1)
    loop.model_combo.setCurrentText("unet+rf")
    assert loop.train(TrainConfig(model="unet+rf", steps=15))
    qtbot.waitUntil(lambda: not loop.jobs.busy, timeout=180_000)
    assert "Trained unet+rf" in loop.status.text()
    assert loop.infer()
    qtbot.waitUntil(lambda: not loop.jobs.busy, timeout=180_000)
    assert result_layer_names("sample")["confidence"] in viewer.layers
    loop.threshold_slider.setValue(60)
    assert loop.add_predictions() > 0


def test_auto_chooses_a_model_in_the_widget_and_says_which(viewer_with_project, qtbot):
    """One image: the candidates are compared on its two halves; the status names the winner."""
    viewer, loop, store = viewer_with_project
    viewer.layers["sample labels"].data = sparse_scribbles(
        store.read_derived("sample", "ground_truth"), 0.03, seed=1
    )
    loop.model_combo.setCurrentText("auto")
    assert loop.novelty_check.isEnabled()  # auto may pick the U-Net
    config = loop.train_config()
    assert config.model == "auto"
    config.steps = 15
    assert loop.train(config)
    qtbot.waitUntil(lambda: not loop.jobs.busy, timeout=180_000)
    text = loop.status.text()
    assert "auto chose" in text and "the other half of the image" in text
    chosen = ProjectStore.open(store.path).model_config("latest")["kind"]
    assert f"Trained {chosen}, iteration 1" in text


def test_the_novelty_check_box_trains_a_gated_u_net(viewer_with_project, qtbot):
    """Ticked, Train fits the novelty gate and saves it with the model; not offered for rf."""
    viewer, loop, store = viewer_with_project
    assert not loop.novelty_check.isChecked()  # off by default
    assert loop.train_config().novelty_gate == 0.0
    assert loop.train_config().time_budget is None  # "the model's steps"
    assert loop.budget_spin.text() == "the model's steps"
    loop.budget_spin.setValue(4.5)
    assert loop.train_config().time_budget == 4.5
    loop.budget_spin.setValue(0)
    assert loop.train_config().filter_bank is None and loop.bank_check.isEnabled()
    loop.bank_check.setChecked(True)
    assert loop.train_config().filter_bank == [1.0, 2.0, 4.0, 8.0]
    loop.bank_check.setChecked(False)
    assert loop.jitter_check.isChecked() and loop.train_config().band_jitter  # on by default
    loop.jitter_check.setChecked(False)
    assert not loop.train_config().band_jitter
    loop.jitter_check.setChecked(True)
    loop.novelty_check.setChecked(True)
    config = loop.train_config()
    assert config.novelty_gate > 0
    viewer.layers["sample labels"].data = sparse_scribbles(
        store.read_derived("sample", "ground_truth"), 0.03, seed=1
    )
    config.steps = 25
    assert loop.train(config)
    qtbot.waitUntil(lambda: not loop.jobs.busy, timeout=120_000)
    saved = ProjectStore.open(store.path).model_config("latest")
    assert saved["novelty"]["tau"] > 0 and len(saved["novelty"]["means"]) == 5
    loop.model_combo.setCurrentText("rf")
    assert not loop.novelty_check.isEnabled() and loop.train_config().novelty_gate == 0.0
    loop.bank_check.setChecked(True)  # ticked before: the forest has no filter-bank front end
    assert not loop.bank_check.isEnabled() and loop.train_config().filter_bank is None
    assert not loop.jitter_check.isEnabled()  # nor band jitter


def test_the_lovasz_check_box_adds_the_overlap_loss_to_training(
    viewer_with_project, qtbot, monkeypatch
):
    """Ticked, Train adds the Lovász-softmax loss at every step; off by default and not
    offered for the forest."""
    import napari_hitl.core.learning.net as net

    viewer, loop, store = viewer_with_project
    assert not loop.lovasz_check.isChecked() and loop.train_config().lovasz_weight == 0.0
    calls = []
    real = net.lovasz_softmax
    monkeypatch.setattr(net, "lovasz_softmax", lambda *a: calls.append(1) or real(*a))
    viewer.layers["sample labels"].data = sparse_scribbles(
        store.read_derived("sample", "ground_truth"), 0.03, seed=1
    )
    loop.lovasz_check.setChecked(True)
    config = loop.train_config()
    assert config.lovasz_weight == 1.0
    config.steps = 6
    assert loop.train(config)
    qtbot.waitUntil(lambda: not loop.jobs.busy, timeout=120_000)
    assert "iteration 1" in loop.status.text() and len(calls) == 6  # once per step
    loop.model_combo.setCurrentText("rf")
    assert not loop.lovasz_check.isEnabled() and loop.train_config().lovasz_weight == 0.0


def test_texture_features_follow_the_projects_model(viewer_with_project, qtbot):
    """Ticked, Train gives the U-Net its filter bank; the box then shows what the stored model
    has, so a reopened project's Train continues it rather than starting afresh."""
    viewer, loop, store = viewer_with_project
    viewer.layers["sample labels"].data = sparse_scribbles(
        store.read_derived("sample", "ground_truth"), 0.03, seed=1
    )
    loop.bank_check.setChecked(True)
    config = loop.train_config()
    assert config.filter_bank == [1.0, 2.0, 4.0, 8.0]
    config.steps = 10
    assert loop.train(config)
    qtbot.waitUntil(lambda: not loop.jobs.busy, timeout=120_000)
    saved = ProjectStore.open(store.path).model_config("latest")
    assert saved["spec"]["bank"] == config.filter_bank
    loop.bank_check.setChecked(False)
    loop._image_changed()  # what choosing the labels layer (or reopening the project) runs
    assert loop.bank_check.isChecked()


def test_the_row_cue_box_trains_with_it_and_follows_the_projects_model(viewer_with_project, qtbot):
    """Off by default; ticked, Train keeps the cue with the model (for every model kind), and
    the box then shows what the stored model has, so Train continues it."""
    viewer, loop, store = viewer_with_project
    assert not loop.row_check.isChecked() and not loop.train_config().row_position
    viewer.layers["sample labels"].data = sparse_scribbles(
        store.read_derived("sample", "ground_truth"), 0.03, seed=1
    )
    loop.row_check.setChecked(True)
    config = loop.train_config()
    assert config.row_position
    config.steps = 10
    assert loop.train(config)
    qtbot.waitUntil(lambda: not loop.jobs.busy, timeout=120_000)
    saved = ProjectStore.open(store.path).model_config("latest")
    assert saved["normalization"]["row_position"] is True
    loop.row_check.setChecked(False)
    loop._image_changed()  # what choosing the labels layer (or reopening the project) runs
    assert loop.row_check.isChecked()


def test_start_a_new_network_trains_from_scratch_once(viewer_with_project, qtbot):
    """Ticked, the next Train forgets the stored model and starts afresh; the box then unticks
    itself, so the Train after it continues the new model again."""
    viewer, loop, store = viewer_with_project
    viewer.layers["sample labels"].data = sparse_scribbles(
        store.read_derived("sample", "ground_truth"), 0.03, seed=1
    )
    modes = []
    for tick in (False, False, True, False):
        loop.fresh_check.setChecked(tick)
        assert loop.train(TrainConfig(steps=5, warm_steps=5))
        qtbot.waitUntil(lambda: not loop.jobs.busy, timeout=120_000)
        modes.append("warm start" if "warm start" in loop.status.text() else "fresh")
        assert not loop.fresh_check.isChecked()
    assert modes == ["fresh", "warm start", "fresh", "warm start"]
