"""Predicting project images with the latest model and storing the result, signed."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

import numpy as np

from napari_hitl.core.learning.data import (
    TrainingDataError,
)
from napari_hitl.core.learning.prediction import Prediction, predict_normalized
from napari_hitl.core.learning.registry import (
    Classifier,
)
from napari_hitl.core.loop.reading import (
    check_index,
    clip_region,
    context_window,
    normalized_window,
    stack_depth,
)
from napari_hitl.core.loop.state import LoopState, load_state
from napari_hitl.core.progress import CancelToken, Progress, relay
from napari_hitl.core.store import ATTR, LABEL_DTYPE, ImageInfo, ProjectStore
from napari_hitl.core.tiling import Box

PREDICTION_KEYS = ("prediction", "confidence", "margin", "entropy", "probabilities")


def predict_plane(
    clf: Classifier,
    store: ProjectStore,
    name: str,
    index: int | None,
    box: Box | None,
    tile: int | str | None,
    cancel: CancelToken | None,
) -> Generator[Progress, None, Prediction]:
    """Predict one 2-D plane (an image or one slice), all of it or only ``box`` (full size)."""
    norm = clf.normalization
    if box is None:
        x, valid = normalized_window(store, name, norm, index=index)
        return (yield from predict_normalized(clf, x, valid, tile, cancel))
    h, w = store.image_info(name).spatial_shape[-2:]
    window, inner = context_window(clf, box, (h, w))
    x, valid = normalized_window(store, name, norm, index=index, window=window)
    part = yield from predict_normalized(clf, x, valid, tile, cancel)
    out = Prediction.empty(part.probabilities.shape[0], (h, w))
    out.paste(part.crop(*inner), box)
    return out


def prediction_arrays(pred: Prediction) -> dict[str, np.ndarray]:
    """The arrays a prediction is stored as, by key (:data:`PREDICTION_KEYS`)."""
    return {
        "prediction": pred.labels,
        "confidence": pred.confidence,
        "margin": pred.margin,
        "entropy": pred.entropy,
        "probabilities": pred.probabilities,
    }


def predict_project_image(
    store: ProjectStore,
    name: str,
    state: LoopState | None = None,
    write: bool = True,
    tile: int | str | None = "auto",
    cancel: CancelToken | None = None,
    *,
    index: int | None = None,
    region: Sequence[int] | None = None,
) -> Generator[Progress, None, Prediction]:
    """Predict image ``name`` with the project's model; store the results as signed arrays.

    Parameters
    ----------
    store
        The project (the results are written when it is writable and ``write``).
    name
        The image.
    state
        The model (default: the stored ``latest``).
    write
        Store the prediction, confidence, margin, entropy and probabilities.
    tile
        Tile edge of the inference, ``None`` for one piece, ``"auto"`` for the model's.
    cancel
        Checked between tiles (and slices).
    index
        For a stack: predict this slice only (``None``: every slice). Must be ``None`` for a 2-D
        image.
    region
        ``(row0, row1, col0, col1)`` in pixels: predict only this box (with the context the
        model needs); everything outside it is 0 in the results.

    Returns
    -------
    Prediction
        2-D (``H, W``; probabilities ``K, H, W``) for a 2-D image or one slice; for a whole
        stack the arrays have the stack axis (``Z, H, W``; probabilities ``K, Z, H, W``).

    Raises
    ------
    TrainingDataError
        No model yet.
    IncompatibleBandsError
        The image lacks one of the model's bands.
    StackIndexError
        ``index`` on a 2-D image or outside the stack.
    """
    state = state or load_state(store)
    if state is None:
        raise TrainingDataError("no model yet: train first")
    clf = state.classifier
    info = store.image_info(name)
    index = check_index(info, index)
    clf.normalization.band_indices(info.band_names, what=f"image {name!r}")
    box = None if region is None else clip_region(region, info.spatial_shape[-2:])
    depth = stack_depth(info)
    sig_base = store.signature(name, model_hash=state.model_hash, iteration=state.iteration)
    region_sig = {} if box is None else {"region": list(box)}
    if not depth or index is not None:
        pred = yield from predict_plane(clf, store, name, index, box, tile, cancel)
        if write and store.writable:
            if not depth:
                for key, arr in prediction_arrays(pred).items():
                    store.write_derived(name, key, arr, {**sig_base, **region_sig})
            else:
                write_slice(store, name, pred, index, sig_base, box, info)  # type: ignore[arg-type]
        return pred

    # the whole stack, slice after slice, into preallocated stack-shaped arrays
    h, w = info.spatial_shape[-2:]
    k = len(clf.class_values)
    out = Prediction(
        np.zeros((depth, h, w), LABEL_DTYPE),
        np.zeros((k, depth, h, w), np.float32),
        np.zeros((depth, h, w), np.float32),
        np.zeros((depth, h, w), np.float32),
        np.zeros((depth, h, w), np.float32),
    )
    axis = info.axes[1].lower()
    for z in range(depth):
        if cancel is not None:
            cancel.raise_if_cancelled()
        plane = yield from relay(
            predict_plane(clf, store, name, z, box, tile, cancel),
            z,
            depth,
            f"{axis}={z} ({z + 1}/{depth})",
        )
        out.labels[z] = plane.labels
        out.probabilities[:, z] = plane.probabilities
        out.confidence[z] = plane.confidence
        out.margin[z] = plane.margin
        out.entropy[z] = plane.entropy
        del plane
    if write and store.writable:
        sig = {**sig_base, "slices": list(range(depth))}
        if box is not None:
            sig["regions"] = {str(z): list(box) for z in range(depth)}
        for key, arr in prediction_arrays(out).items():
            store.write_derived(name, key, arr, sig)
    return out


def stack_shapes(info: ImageInfo, k: int) -> dict[str, tuple[int, ...]]:
    """Shapes of a stack's stored prediction arrays for ``k`` classes, by key."""
    spatial = tuple(int(v) for v in info.spatial_shape)
    return {key: ((k, *spatial) if key == "probabilities" else spatial) for key in PREDICTION_KEYS}


def is_current(sig: dict[str, Any], base: dict[str, Any]) -> bool:
    return all(sig.get(k) == v for k, v in base.items())


def write_slice(
    store: ProjectStore,
    name: str,
    pred: Prediction,
    index: int,
    sig_base: dict[str, Any],
    box: Box | None,
    info: ImageInfo,
) -> None:
    """Write one slice's prediction into the stack's arrays (reset first if another model's)."""
    hitl = store.derived_group(name)
    arrays = prediction_arrays(pred)
    shapes = stack_shapes(info, pred.probabilities.shape[0])
    present = set(hitl.array_keys())
    sigs = {
        key: dict(hitl[key].attrs).get(ATTR, {}).get("signature", {})  # type: ignore[union-attr]
        for key in PREDICTION_KEYS
        if key in present
    }
    current = all(
        key in sigs
        and is_current(sigs[key], sig_base)
        and tuple(hitl[key].shape) == shapes[key]  # type: ignore[union-attr]
        and hitl[key].dtype == arrays[key].dtype  # type: ignore[union-attr]
        for key in PREDICTION_KEYS
    )
    slices: set[int] = set()
    regions: dict[str, list[int]] = {}
    if current:
        first = sigs["prediction"]
        slices = {int(s) for s in first.get("slices", [])}
        regions = dict(first.get("regions", {}))
    regions.pop(str(index), None)
    if box is not None:
        regions[str(index)] = list(box)
    for key, data in arrays.items():
        if current:
            arr = hitl[key]
        else:  # empty (all-zero) arrays cost no memory and no disk: zero chunks are not written
            shape = shapes[key]
            arr = hitl.create_array(
                key,
                shape=shape,
                dtype=data.dtype,
                chunks=(*(1,) * (len(shape) - 2), min(512, shape[-2]), min(512, shape[-1])),
                fill_value=0,
                overwrite=True,
                attributes={ATTR: {"signature": {**sig_base, "slices": []}}},
            )
        if key == "probabilities":
            arr[:, index] = data  # type: ignore[index]
        else:
            arr[index] = data  # type: ignore[index]
        # the slice is listed only once its data are written
        sig = {**sig_base, "slices": sorted(slices | {index})}
        if regions:
            sig["regions"] = regions
        arr.attrs.update({ATTR: {"signature": sig}})
