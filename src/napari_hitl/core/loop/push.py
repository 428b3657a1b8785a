"""Pushing a stored prediction into the labels: confident pixels, never over a human label."""

from __future__ import annotations

import numpy as np

from napari_hitl.core.choices import DEFAULT_MARGIN, DEFAULT_THRESHOLD
from napari_hitl.core.learning.data import (
    TrainingDataError,
)
from napari_hitl.core.loop.accept import PushRecord, accept_mask, store_push
from napari_hitl.core.loop.reading import check_index, stack_depth
from napari_hitl.core.loop.records import stored_prediction
from napari_hitl.core.loop.state import LoopState, load_state
from napari_hitl.core.store import LABEL_DTYPE, ProjectStore


def push_project_image(
    store: ProjectStore,
    name: str,
    threshold: float = DEFAULT_THRESHOLD,
    region: np.ndarray | tuple[int, int, int, int] | None = None,
    state: LoopState | None = None,
    margin: int = DEFAULT_MARGIN,
    *,
    index: int | None = None,
) -> PushRecord:
    """Accept the current model's stored prediction of ``name`` at ``threshold`` into its labels.

    Only unlabeled pixels change, and only those ``margin`` px or more inside a confident region
    of one class (see :func:`napari_hitl.core.loop.accept.accept_mask`); the push can be undone with
    :func:`napari_hitl.core.loop.accept.store_undo`.

    Parameters
    ----------
    store, name
        The project and image.
    threshold
        Minimum confidence.
    region
        A box ``(row0, row1, col0, col1)`` or a boolean mask (``H, W``, or ``Z, H, W`` for a
        stack) limiting the push.
    state
        The current model (default: the stored ``latest``).
    margin
        Pixels kept away from predicted class boundaries.
    index
        For a stack: push this slice only; ``None`` pushes every slice the current model has
        predicted (one push, undone at once). Must be ``None`` for a 2-D image.

    Raises
    ------
    TrainingDataError
        No model yet.
    StaleDataError
        The prediction (or the slice's) was made by another model.
    """
    state = state or load_state(store)
    if state is None:
        raise TrainingDataError("no model yet: train first")
    info = store.image_info(name)
    index = check_index(info, index)
    stored = stored_prediction(store, name, state, index=index)
    if not stack_depth(info):
        accept = accept_mask(
            stored["confidence"],
            threshold,
            region,
            store.valid_mask(name),
            predicted=stored["prediction"],
            margin=margin,
        )
        return store_push(store, name, stored["prediction"], accept, state.iteration)
    valid = store.valid_mask(name)
    accept = np.zeros(info.spatial_shape, bool)
    if index is not None:
        predicted = np.zeros(info.spatial_shape, LABEL_DTYPE)
        predicted[index] = stored["prediction"]
        planes = [(index, stored["prediction"], stored["confidence"])]
    else:
        predicted = stored["prediction"]
        planes = [(z, predicted[z], stored["confidence"][z]) for z in stored["slices"]]
    for z, pred_z, conf_z in planes:
        region_z = region
        if isinstance(region, np.ndarray) and region.ndim == 3:
            region_z = region[z]
        accept[z] = accept_mask(
            conf_z, threshold, region_z, valid[z], predicted=pred_z, margin=margin
        )
    return store_push(store, name, predicted, accept, state.iteration)
