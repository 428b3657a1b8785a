"""The Guide the model widget under Xvfb: paint hints, Apply, Accept, Reset, commands."""

from __future__ import annotations

import numpy as np
import pytest

from napari_hitl._napari.names import guide_layer_names, result_layer_names
from napari_hitl.core.evaluation.scribbles import sparse_scribbles
from napari_hitl.core.hints.commands import parse_command
from napari_hitl.core.learning.net import TrainConfig
from napari_hitl.core.loop import load_state, predict_project_image, train_project
from napari_hitl.core.progress import run_to_end
from napari_hitl.core.sample.store import build_sample_store
from napari_hitl.core.store import PROVENANCE_HUMAN, ProjectStore

pytestmark = pytest.mark.gui


@pytest.fixture
def guided(open_dock, tmp_path):
    store = build_sample_store(tmp_path / "p.zarr", shape=(128, 128), n_images=1)
    gt = store.read_derived("sample", "ground_truth")
    store.write_labels("sample", sparse_scribbles(gt, 0.02, seed=0))
    run_to_end(train_project(store, TrainConfig(steps=30)))
    viewer, widget = open_dock(store, "Guide the model", show=True)
    return viewer, widget, store


def test_paint_hints_apply_accept_reset(guided, qtbot, wait_idle):
    viewer, widget, store = guided
    lab = viewer.layers["sample labels"]
    state = load_state(store)
    plain = run_to_end(predict_project_image(store, "sample", state, write=False))
    classes = state.classifier.class_values
    # the least sure unlabeled pixel, hinted with the runner-up class
    margin = np.where(np.asarray(lab.data) == 0, plain.margin, np.inf)
    r, c = np.unravel_index(np.argmin(margin), margin.shape)
    k = int(np.argsort(plain.probabilities[:, r, c])[-2])
    value = classes[k]

    viewer.layers.selection.active = lab
    widget.refresh_classes()
    widget.class_combo.setCurrentIndex(widget.class_combo.findData(value))
    widget.hint_button.toggle()  # Alt-B
    hints = viewer.layers[guide_layer_names("sample")["hints"]]
    assert viewer.layers.selection.active is hints and hints.mode == "paint"
    assert hints.selected_label == value
    assert hints.data.shape == lab.data.shape
    np.testing.assert_allclose(hints.scale, lab.scale)
    data = np.asarray(hints.data).copy()
    data[r, c] = value  # a click with the brush
    hints.data = data
    widget.hint_button.toggle()
    assert viewer.layers.selection.active is lab

    human_before = np.asarray(lab.data).copy()
    assert widget.apply()
    wait_idle(widget)
    s = widget.session
    assert s is not None and s.guided is not None
    pred_layer = viewer.layers[result_layer_names("sample")["prediction"]]
    np.testing.assert_array_equal(pred_layer.data, s.guided.labels)  # replaces the preview
    assert s.guided.labels[r, c] == value and plain.labels[r, c] != value
    change = viewer.layers[guide_layer_names("sample")["change"]]
    assert change.data[r, c] == value
    assert int((np.asarray(change.data) > 0).sum()) == int((s.guided.labels != plain.labels).sum())
    assert "Guided by 1 hint px" in widget.status.text()
    assert load_state(store).model_hash == state.model_hash  # weights unchanged

    n = widget.accept()
    assert n > 0
    after = ProjectStore.open(store.path).labels("sample")
    np.testing.assert_array_equal(np.asarray(lab.data), after)
    human = human_before > 0
    np.testing.assert_array_equal(after[human], human_before[human])  # human labels untouched
    prov = ProjectStore.open(store.path).provenance("sample")
    assert (prov[human] == PROVENANCE_HUMAN).all()
    added = (after > 0) & ~human
    assert added.sum() == n
    np.testing.assert_array_equal(after[added], s.guided.labels[added])

    widget.reset()
    np.testing.assert_array_equal(pred_layer.data, plain.labels)
    assert not np.asarray(hints.data).any()
    assert s.guided is None and len(s.guide.hints) == 0


def test_typed_command_and_a_bad_one(guided, qtbot, wait_idle):
    viewer, widget, _store = guided
    viewer.layers.selection.active = viewer.layers["sample labels"]
    widget.command_edit.setText("find watr in top left")
    assert widget.apply()
    wait_idle(widget)
    assert "did you mean 'water'" in widget.status.text()
    assert widget.session is None or widget.session.guided is None
    widget.command_edit.setText("remove vegetation in the top")
    assert widget.apply()
    wait_idle(widget)
    s = widget.session
    assert s is not None and s.guided is not None
    assert s.commands == ["remove vegetation in top"]
    # the command lowers vegetation where it sampled its points (all predicted vegetation, in
    # the top third). Measured with the 8² training crops: its probability there 0.70 -> 0.46
    # (30 steps) and 0.95 -> 0.62 (320), though most of them stay vegetation and the top third
    # as a whole gains vegetation pixels (docs/guide.md: a weak point of `remove`)
    h = s.guide.hints
    lowered = h.lower.astype(bool)
    rows, cols = h.rows[lowered], h.cols[lowered]
    clf = s.state.classifier
    top = parse_command("remove vegetation in the top", clf.class_names, clf.class_values)
    assert lowered.any() and top.region(s.plain.labels.shape)[rows, cols].all()
    k = list(clf.class_values).index(1)  # vegetation
    before = s.plain.probabilities[k][rows, cols].mean()
    after = s.guided.probabilities[k][rows, cols].mean()
    assert after < before - 0.1
    assert "remove vegetation in top" in widget.status.text()
    # without hints or a command, Apply explains what to do
    widget.command_edit.setText("")
    assert not widget.apply()
    assert "Paint a few hint pixels" in widget.status.text()
