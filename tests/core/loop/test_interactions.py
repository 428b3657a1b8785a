"""Positive / negative points become labels, never over a human label."""

from __future__ import annotations

import numpy as np
import pytest

from napari_hitl.core.errors import HitlError
from napari_hitl.core.loop.interactions import apply_points
from napari_hitl.core.store import PROVENANCE_HUMAN, machine_provenance


def prediction_arrays():
    labels = np.zeros((20, 20), np.uint16)
    prov = np.zeros_like(labels)
    labels[0:5, 0:5] = 1  # a human stroke of class 1
    prov[0:5, 0:5] = PROVENANCE_HUMAN
    labels[10:20, 10:20] = 2  # an accepted (machine) region of class 2
    prov[10:20, 10:20] = machine_provenance(1)
    return labels, prov


def test_positive_point_labels_a_disk_but_never_a_human_label():
    labels, prov = prediction_arrays()
    res = apply_points(labels, prov, [[4, 4], [8, 8]], [3, 3], [True, True], [1, 2, 3], radius=2)
    assert (res.labels[0:5, 0:5] == 1).all()  # the human stroke stays
    assert res.labels[8, 8] == 3 and res.labels[6, 8] == 3 and res.labels[5, 5] == 3
    assert res.labels[6, 4] == 3 and res.labels[5, 4] == 3 and res.labels[6, 6] == 0
    assert res.labeled == int((res.labels == 3).sum())
    np.testing.assert_array_equal(labels[0:5, 0:5], 1)  # input not modified
    # a positive point corrects machine labels
    res = apply_points(labels, prov, [[15, 15]], [1], [True], [1, 2, 3], radius=1)
    assert res.labels[15, 15] == 1 and res.labels[14, 15] == 1 and res.labels[13, 15] == 2


def test_negative_point_with_many_classes_removes_the_wrong_machine_region():
    labels, prov = prediction_arrays()
    res = apply_points(labels, prov, [[12, 12], [2, 2]], [2, 1], [False, False], [1, 2, 3])
    assert (res.labels[10:20, 10:20] == 0).all() and res.removed == 100
    assert (res.labels[0:5, 0:5] == 1).all()  # a negative point on a human label: nothing
    assert res.skipped == 1


def test_negative_point_with_two_classes_labels_the_other_class():
    labels, prov = prediction_arrays()
    res = apply_points(labels, prov, [[12, 12]], [2], [False], [1, 2], radius=1)
    assert res.labels[12, 12] == 1 and res.labels[11, 12] == 1 and res.labels[14, 12] == 2


def test_bad_points_are_refused_or_skipped():
    labels, prov = prediction_arrays()
    with pytest.raises(HitlError, match="classes \\[7\\]"):
        apply_points(labels, prov, [[1, 1]], [7], [True], [1, 2])
    res = apply_points(labels, prov, [[-5, 3], [40, 2]], [1, 1], [True, True], [1, 2])
    assert res.skipped == 2 and res.labeled == 0
    with pytest.raises(HitlError, match="2-D"):
        apply_points(np.zeros((2, 4, 4)), np.zeros((2, 4, 4)), [[1, 1]], [1], [True], [1, 2])
