"""Stored predictions read back: current (signed by the latest model) or refused as stale."""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_hitl.core.errors import StaleDataError, StoreError
from napari_hitl.core.learning.data import (
    TrainingDataError,
)
from napari_hitl.core.learning.prediction import Prediction
from napari_hitl.core.loop.predict import PREDICTION_KEYS
from napari_hitl.core.loop.reading import check_index, stack_depth
from napari_hitl.core.loop.state import LoopState, load_state
from napari_hitl.core.store import ProjectStore


def current_derived(
    store: ProjectStore, name: str, key: str, expected: dict[str, Any]
) -> tuple[Any, dict[str, Any]]:
    """A derived zarr array (not read) and its signature, refused like ``read_derived``."""
    arr = store.derived_array(name, key, expected, action="predict")
    return arr, store.derived_signature(name, key) or {}


def current_prediction(
    store: ProjectStore, name: str, state: LoopState, *, index: int | None = None
) -> Prediction | None:
    """The stored whole-plane prediction of a 2-D image (or of slice ``index`` of a stack) made
    by ``state``'s model, or ``None`` when it is missing, stale or limited to a region."""
    expected = {"model_hash": state.model_hash, "iteration": state.iteration}
    try:
        found = {k: current_derived(store, name, k, expected) for k in PREDICTION_KEYS}
    except (StoreError, StaleDataError):
        return None
    sigs = [sig for _, sig in found.values()]
    if index is None:
        if any("region" in sig or "slices" in sig for sig in sigs):
            return None
        arrays = {k: np.asarray(arr[...]) for k, (arr, _) in found.items()}
    else:
        if any(
            index not in sig.get("slices", []) or str(index) in sig.get("regions", {})
            for sig in sigs
        ):
            return None
        arrays = {
            k: np.asarray(arr[:, index] if k == "probabilities" else arr[index])
            for k, (arr, _) in found.items()
        }
    return Prediction(
        arrays["prediction"],
        arrays["probabilities"],
        arrays["confidence"],
        arrays["margin"],
        arrays["entropy"],
    )


def stored_prediction(
    store: ProjectStore,
    name: str,
    state: LoopState | None = None,
    *,
    index: int | None = None,
) -> dict[str, Any]:
    """The stored prediction and confidence of ``name``, refused if made by another model.

    Parameters
    ----------
    store, name
        The project and image.
    state
        The current model (default: the stored ``latest``).
    index
        For a stack: one slice (2-D arrays). ``None`` returns the whole stack's arrays and
        ``"slices"``, the slices the current model has predicted.

    Raises
    ------
    StoreError
        Nothing predicted yet.
    StaleDataError
        Predicted by another model, the image changed, or (stacks) the slice was not predicted
        by the current model.
    """
    state = state or load_state(store)
    if state is None:
        raise TrainingDataError("no model yet: train first")
    expected = {"model_hash": state.model_hash, "iteration": state.iteration}
    info = store.image_info(name)
    index = check_index(info, index)
    if not stack_depth(info):
        return {k: store.read_derived(name, k, expected) for k in ("prediction", "confidence")}
    found = {k: current_derived(store, name, k, expected) for k in ("prediction", "confidence")}
    slices = sorted(
        set.intersection(*({int(s) for s in sig.get("slices", [])} for _, sig in found.values()))
    )
    axis = info.axes[1].lower()
    hint = f"napari-hitl predict STORE --image {name} --slice N"
    if index is None:
        if not slices:
            raise StaleDataError(
                f"no slice of image {name!r} is predicted by the current model (iteration "
                f"{state.iteration}); predict it first ({hint})"
            )
        out: dict[str, Any] = {k: np.asarray(arr[...]) for k, (arr, _) in found.items()}
        out["slices"] = slices
        return out
    if index not in slices:
        raise StaleDataError(
            f"slice {axis}={index} of image {name!r} is out of date: the current model "
            f"(iteration {state.iteration}) has predicted slices {slices or 'none'} of it; "
            f"predict that slice first ({hint.replace('N', str(index))})"
        )
    return {k: np.asarray(arr[index]) for k, (arr, _) in found.items()}
