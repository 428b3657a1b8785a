"""The Active-learning widget under Xvfb: rank, jump, mark done, coverage, machine annotation,
questions answered by Alt-digits, suspect labels."""

from __future__ import annotations

import numpy as np
import pytest
from napari.utils.key_bindings import coerce_keybinding

from napari_hitl._napari.names import coverage_name, question_name
from napari_hitl._napari.view import camera
from napari_hitl.core.active.review_queue import done_items
from napari_hitl.core.active.strategies import coverage_grid
from napari_hitl.core.evaluation.scribbles import sparse_scribbles
from napari_hitl.core.learning.net import TrainConfig
from napari_hitl.core.loop import current_prediction, load_state, train_project
from napari_hitl.core.progress import run_to_end
from napari_hitl.core.sample.store import build_sample_store
from napari_hitl.core.store import PROVENANCE_HUMAN, ProjectStore

pytestmark = pytest.mark.gui


@pytest.fixture
def queue(make_napari_viewer, tmp_path, qtbot):
    store = build_sample_store(tmp_path / "p.zarr", shape=(96, 96), n_images=2)
    gt = store.read_derived("sample_00", "ground_truth")
    store.write_labels("sample_00", sparse_scribbles(gt, 0.04, seed=0))
    run_to_end(train_project(store, TrainConfig(steps=40, warm_steps=10)))
    viewer = make_napari_viewer(show=True)
    _dock, project = viewer.window.add_plugin_dock_widget("napari-hitl", "Project")
    project.open_store(store.path)
    painted = []
    viewer.bind_key("Alt-2", lambda _v: painted.append(2), overwrite=True)  # a loop binding
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-hitl", "Active learning")
    return viewer, widget, store, project, painted


def test_rank_jump_done_coverage_and_machine(queue, qtbot, wait_idle):
    viewer, widget, store, project, _ = queue
    widget.strategy_combo.setCurrentText("hise")
    widget.tile_spin.setValue(48)
    assert widget.rank()
    wait_idle(widget)
    ranking = widget.ranking
    assert widget.table.rowCount() == len(ranking.items) == 8
    assert widget.table.item(0, 1).text() == ranking.items[0].key
    routes = [widget.table.item(r, 2).text() for r in range(8)]
    assert routes.count("machine") == 2 and routes[:6] == ["human"] * 6  # γ0 = 0.3 of 8
    # clicking a row of the other image shows that image and centres on the tile
    r = next(i for i, it in enumerate(ranking.items) if it.image == "sample_01")
    item = ranking.items[r]
    widget.table.selectRow(r)
    lab = viewer.layers["sample_01 labels"]
    assert lab.visible and not viewer.layers["sample_00 labels"].visible
    assert viewer.layers.selection.active is lab
    np.testing.assert_allclose(camera(viewer).center[-2:], lab.data_to_world(item.centre)[-2:])
    assert project.current_image() == "sample_01"  # the project widget follows
    # the coverage map of the shown image: labeled share per 48-px tile
    cov = viewer.layers[coverage_name("sample_01")]
    np.testing.assert_array_equal(cov.data, coverage_grid(lab.data > 0, 48))
    np.testing.assert_allclose(cov.scale[-2:], np.asarray(lab.scale[-2:]) * 48)
    # mark done: stored, and the item goes last
    widget.mark_selected_done()
    assert item.key in done_items(ProjectStore.open(store.path))
    assert widget.table.item(7, 1).text() == item.key
    assert widget.table.item(7, 2).text() == "done"
    # Next item (Alt-J) jumps to the first item for the human
    viewer.keymap[coerce_keybinding("Alt-J")](viewer)
    assert widget.selected_items()[0].route == "human"
    # the machine labels its items, never over a human label
    human_before = {n: store.labels(n) for n in store.image_names()}
    widget.delta_spin.setValue(0.6)
    added = widget.machine_annotate()
    assert added > 0
    for name in store.image_names():
        now = ProjectStore.open(store.path).labels(name)
        h = human_before[name] > 0
        assert np.array_equal(now[h], human_before[name][h])
        if f"{name} labels" in viewer.layers:
            np.testing.assert_array_equal(viewer.layers[f"{name} labels"].data, now)


def test_question_answered_with_alt_digit(queue, qtbot, wait_idle):
    viewer, widget, store, _project, painted = queue
    assert widget.ask()
    wait_idle(widget)
    assert widget.pending is not None
    _store, image, index, q = widget.pending
    assert image == "sample_00" and index is None
    lab = viewer.layers["sample_00 labels"]
    assert lab.data[q.row, q.col] == 0
    # the smallest margin among unlabeled pixels, marked and centred
    pred = current_prediction(store, image, load_state(store))
    assert q.margin == pytest.approx(float(np.where(lab.data == 0, pred.margin, 9).min()))
    pts = viewer.layers[question_name(image)]
    np.testing.assert_array_equal(pts.data, [[q.row, q.col]])
    np.testing.assert_allclose(camera(viewer).center[-2:], lab.data_to_world((q.row, q.col)))
    assert "hesitates" in widget.question_label.text()
    # Alt-2 answers (class 2) instead of its painting binding, which comes back afterwards
    widget.auto_check.setChecked(False)
    viewer.keymap[coerce_keybinding("Alt-2")](viewer)
    assert painted == []
    assert lab.data[q.row, q.col] == 2
    saved = ProjectStore.open(store.path)
    assert saved.labels(image)[q.row, q.col] == 2
    assert saved.provenance(image)[q.row, q.col] == PROVENANCE_HUMAN
    assert widget.pending is None and len(pts.data) == 0
    viewer.keymap[coerce_keybinding("Alt-2")](viewer)
    assert painted == [2]
    # skip: the next question is away from the skipped one
    widget.ask()
    wait_idle(widget)
    first = widget.pending[3]
    widget.skip()
    wait_idle(widget)
    second = widget.pending[3]
    assert np.hypot(first.row - second.row, first.col - second.col) > 16
    widget.shutdown()
    viewer.keymap[coerce_keybinding("Alt-2")](viewer)
    assert painted == [2, 2]  # closing the widget gave the key back


def test_suspect_labels_listed_and_shown(queue, qtbot, wait_idle):
    viewer, widget, store, _project, _ = queue
    pred = current_prediction(store, "sample_00", load_state(store))
    if pred is None:
        from napari_hitl.core.loop import predict_project_image

        pred = run_to_end(predict_project_image(store, "sample_00"))
    labels = store.labels("sample_00")
    sure = (pred.confidence > 0.9) & (labels == 0)
    r, c = np.argwhere(sure[5:-5, 5:-5])[0] + 5
    wrong = 1 if pred.labels[r, c] != 1 else 2
    lab = viewer.layers["sample_00 labels"]
    lab.data[r, c] = wrong  # a slip of the brush (saved by the widget before it searches)
    assert widget.find_suspects()
    wait_idle(widget)
    assert widget.suspect_list.count() >= 1
    hit = [i for i, s in enumerate(widget.suspects) if s.image == "sample_00" and s.box[0] == r]
    assert hit
    widget.suspect_list.setCurrentRow(hit[0])
    np.testing.assert_allclose(camera(viewer).center[-2:], lab.data_to_world((r, c)), atol=0.6)
