"""Push never touches a labeled pixel; undo is exact; clear removes machine labels only."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from napari_hitl.core.io.rasters import Raster
from napari_hitl.core.loop.accept import (
    accept_mask,
    clear_machine_labels,
    push,
    push_history,
    store_clear_machine,
    store_push,
    store_undo,
    undo_push,
)
from napari_hitl.core.store import PROVENANCE_HUMAN, ProjectStore, add_image, machine_provenance
from napari_hitl.core.store.classes import make_classes

SHAPE = (12, 15)
label_maps = arrays(np.uint16, SHAPE, elements=st.integers(0, 4))


@settings(max_examples=150, deadline=None)
@given(
    labels=label_maps,
    human=arrays(bool, SHAPE),
    predicted=arrays(np.uint16, SHAPE, elements=st.integers(0, 4)),
    conf=arrays(np.float32, SHAPE, elements=st.floats(0, 1, width=32)),
    threshold=st.floats(0, 1),
    iteration=st.integers(1, 30),
)
def test_push_only_fills_unlabeled_and_undo_is_exact(
    labels, human, predicted, conf, threshold, iteration
):
    prov = np.where(labels > 0, np.where(human, PROVENANCE_HUMAN, machine_provenance(1)), 0)
    prov = prov.astype(np.uint16)
    accept = accept_mask(conf, threshold)
    new_labels, new_prov, rec = push(labels, prov, predicted, accept, iteration)
    labeled = labels > 0
    # no labeled pixel (human or machine) changes, in value or provenance
    assert np.array_equal(new_labels[labeled], labels[labeled])
    assert np.array_equal(new_prov[labeled], prov[labeled])
    # exactly the accepted, unlabeled, predicted pixels are filled, as machine pixels
    filled = accept & ~labeled & (predicted > 0)
    assert np.array_equal(new_labels[filled], predicted[filled])
    assert (new_prov[filled] == machine_provenance(iteration)).all()
    assert np.array_equal(new_labels[~filled & ~labeled], labels[~filled & ~labeled])
    assert rec.count == filled.sum()
    # undo restores both arrays exactly
    back_labels, back_prov, n = undo_push(new_labels, new_prov, rec)
    assert n == rec.count
    assert np.array_equal(back_labels, labels) and np.array_equal(back_prov, prov)


def test_undo_keeps_pixels_a_person_edited_after_the_push():
    labels = np.zeros((4, 4), np.uint16)
    prov = np.zeros_like(labels)
    new_l, new_p, rec = push(labels, prov, np.full((4, 4), 2, np.uint16), np.ones((4, 4), bool), 3)
    new_l[0, 0], new_p[0, 0] = 1, PROVENANCE_HUMAN  # a person corrects one pushed pixel
    back_l, back_p, n = undo_push(new_l, new_p, rec)
    assert n == 15 and back_l[0, 0] == 1 and back_p[0, 0] == PROVENANCE_HUMAN
    assert not back_l.ravel()[1:].any()


def test_clear_machine_labels_keeps_human():
    labels = np.array([[1, 2, 0], [3, 0, 1]], np.uint16)
    prov = np.array([[1, 2, 0], [5, 0, 1]], np.uint16)
    new_l, new_p, n = clear_machine_labels(labels, prov)
    assert n == 2
    np.testing.assert_array_equal(new_l, [[1, 0, 0], [0, 0, 1]])
    np.testing.assert_array_equal(new_p, [[1, 0, 0], [0, 0, 1]])


def test_accept_mask_region_and_validity():
    conf = np.array([[0.99, 0.5], [0.96, 0.97]], np.float32)
    assert accept_mask(conf).tolist() == [[True, False], [True, True]]
    assert accept_mask(conf, 0.98).tolist() == [[True, False], [False, False]]
    assert accept_mask(conf, region=(1, 2, 0, 2)).tolist() == [[False, False], [True, True]]
    valid = np.array([[True, True], [False, True]])
    assert accept_mask(conf, valid=valid).tolist() == [[True, False], [False, True]]
    with pytest.raises(ValueError, match="threshold"):
        accept_mask(conf, 1.5)


def test_store_push_undo_persist_across_reopen(tmp_path, rng):
    store = ProjectStore.create(tmp_path / "p.zarr", classes=make_classes(["a", "b", "c"]))
    add_image(store, Raster(rng.random((2, 20, 20)).astype(np.float32), "CYX", ["x", "y"]), "im")
    human = np.zeros((20, 20), np.uint16)
    human[:5] = 1
    store.write_labels("im", human)
    pred = np.full((20, 20), 3, np.uint16)
    conf = rng.random((20, 20)).astype(np.float32)
    r1 = store_push(store, "im", pred, accept_mask(conf, 0.5), 1)
    after1 = store.labels("im"), store.provenance("im")
    r2 = store_push(store, "im", np.full((20, 20), 2, np.uint16), np.ones((20, 20), bool), 2)
    assert r1.count > 0 and r2.count == 400 - 100 - r1.count
    assert (store.labels("im")[:5] == 1).all()  # human rows never touched
    reopened = ProjectStore.open(tmp_path / "p.zarr", "a")
    assert push_history(reopened, "im") == [1, 2]
    assert store_undo(reopened, "im") == r2.count
    np.testing.assert_array_equal(reopened.labels("im"), after1[0])
    np.testing.assert_array_equal(reopened.provenance("im"), after1[1])
    assert store_undo(reopened, "im") == r1.count
    np.testing.assert_array_equal(reopened.labels("im"), human)
    assert store_undo(reopened, "im") == 0
    store_push(reopened, "im", pred, np.ones((20, 20), bool), 3)
    assert store_clear_machine(reopened, "im") == 300
    np.testing.assert_array_equal(reopened.labels("im"), human)
    assert push_history(reopened, "im") == []


def test_settled_excludes_boundaries_and_doubtful_neighbours():
    from napari_hitl.core.loop.accept import settled

    pred = np.ones((7, 7), np.uint16)
    pred[:, 4:] = 2
    conf = np.full((7, 7), 0.99, np.float32)
    conf[0, 0] = 0.5
    s = settled(pred, conf, 0.95, 1)
    assert not s[:, 3].any() and not s[:, 4].any()  # next to the class boundary
    assert not s[1, 1] and s[3, 1] and s[3, 5]  # next to a doubtful pixel / well inside


def test_margin_keeps_accepted_pixels_off_predicted_boundaries():
    pred = np.ones((9, 9), np.uint16)
    pred[:, 5:] = 2
    conf = np.full((9, 9), 0.99, np.float32)
    conf[4, 1] = 0.6  # one doubtful pixel inside class 1
    plain = accept_mask(conf, 0.95)
    assert plain.sum() == 80
    m1 = accept_mask(conf, 0.95, predicted=pred, margin=1)
    assert not m1[:, 4:6].any()  # the two columns along the boundary
    assert not m1[3:6, 0:3].any()  # the doubtful pixel and its 8 neighbours
    assert m1[0, 0] and m1[8, 8] and m1[4, 7]
    m2 = accept_mask(conf, 0.95, predicted=pred, margin=2)
    assert not m2[:, 3:7].any() and (m2 <= m1).all()
    with pytest.raises(ValueError, match="predicted"):
        accept_mask(conf, 0.95, margin=1)
    with pytest.raises(ValueError, match="margin"):
        accept_mask(conf, 0.95, predicted=pred, margin=-1)
