"""The loop's result layers — prediction, confidence, uncertainty, accepted preview — updated in
place by name and aligned with the labels layer (same shape, scale and translate).

A prediction may cover the whole image, one slice of a stack (``index``) or one box of it (a live
round, a region): only that part of the layers changes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_hitl._napari.names import result_layer_names
from napari_hitl.core.learning.prediction import Prediction
from napari_hitl.core.loop import Box
from napari_hitl.core.store.classes import ClassInfo

UNCERTAINTY_KINDS = ("entropy", "1 − margin")


def uncertainty(pred: Prediction, kind: str) -> np.ndarray:
    """The uncertainty map of ``kind`` (one of :data:`UNCERTAINTY_KINDS`)."""
    return pred.entropy if kind == "entropy" else (1.0 - pred.margin).astype(np.float32)


def _target(index: int | None, box: Box | None) -> tuple[Any, ...]:
    lead = () if index is None else (index,)
    if box is None:
        return (*lead, Ellipsis)
    r0, r1, c0, c1 = box
    return (*lead, slice(r0, r1), slice(c0, c1))


def ensure_layer(
    viewer: Any, name: str, kind: str, like: Any, dtype: Any, **kwargs: Any
) -> tuple[Any, bool]:
    """The layer ``name`` shaped like ``like`` (added, or its data replaced after a shape change);
    returns it and whether it is new (or emptied)."""
    from napari_hitl._napari.layers import META

    kwargs.setdefault("metadata", {META: {"role": "result"}})
    shape = np.shape(like.data)
    if name in viewer.layers:
        layer = viewer.layers[name]
        if np.shape(layer.data) == shape:
            return layer, False
        layer.data = np.zeros(shape, dtype)
        return layer, True
    add = getattr(viewer, f"add_{kind}")
    layer = add(
        np.zeros(shape, dtype), name=name, scale=like.scale, translate=like.translate, **kwargs
    )
    return layer, True


def write_part(layer: Any, part: np.ndarray, index: int | None, box: Box | None) -> None:
    """Write ``part`` into the layer's data at slice ``index`` / ``box`` and redraw it."""
    data = layer.data
    data[_target(index, box)] = part
    layer.data = data  # the same array: napari redraws (and recomputes image ranges)


def show_prediction(
    viewer: Any,
    image: str,
    like: Any,
    pred: Prediction,
    classes: list[ClassInfo],
    uncertainty_kind: str = "entropy",
    index: int | None = None,
    box: Box | None = None,
) -> None:
    """Show ``pred`` in the result layers of ``image`` (created hidden the first time).

    Parameters
    ----------
    viewer
        The napari viewer.
    image
        The image name (layer names follow :func:`result_layer_names`).
    like
        The labels layer: result layers take its shape, scale and translate.
    pred
        The prediction of the whole image, of slice ``index`` of a stack, or of ``box`` of it.
    classes
        The project's classes (prediction colours).
    uncertainty_kind
        ``"entropy"`` or ``"1 − margin"``.
    """
    from napari_hitl._napari.layers import direct_colormap

    names = result_layer_names(image)
    cmap = direct_colormap(classes)
    where = (index, box)
    layer, _ = ensure_layer(viewer, names["prediction"], "labels", like, np.uint16, colormap=cmap,
                       opacity=0.6, visible=False)  # fmt: skip
    write_part(layer, pred.labels, *where)
    conf, new = ensure_layer(viewer, names["confidence"], "image", like, np.float32,
                        colormap="magma", contrast_limits=(0.0, 1.0), opacity=0.7,
                        visible=False)  # fmt: skip
    if new:
        conf.colorbar.visible = True  # a legend for the confidence colours
    write_part(conf, pred.confidence, *where)
    unc, _ = ensure_layer(viewer, names["uncertainty"], "image", like, np.float32,
                     colormap="viridis", visible=False)  # fmt: skip
    write_part(unc, uncertainty(pred, uncertainty_kind), *where)
    hi = float(np.nanmax(unc.data)) if np.size(unc.data) else 1.0
    unc.contrast_limits = (0.0, hi if hi > 0 else 1.0)
    ensure_layer(viewer, names["accepted"], "labels", like, np.uint16, colormap=cmap, opacity=0.5)
