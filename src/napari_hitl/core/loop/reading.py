"""Reading images for a model: stack slices, boxes and windows, normalized by band name."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_hitl.core.learning.data import (
    Normalization,
    StackIndexError,
)
from napari_hitl.core.learning.registry import (
    Classifier,
)
from napari_hitl.core.store import ImageInfo, ProjectStore
from napari_hitl.core.tiling import Box


# ----------------------------------------------------------------------- stacks and boxes
def stack_depth(info: ImageInfo) -> int:
    """Number of slices of a ``CZYX``/``CTYX`` stack, 0 for a 2-D image."""
    return int(info.spatial_shape[0]) if len(info.spatial_shape) == 3 else 0


def slice_name(name: str, axis: str, index: int) -> str:
    """Name of one slice of a stack as training reports it: ``"cells[z=3]"``."""
    return f"{name}[{axis.lower()}={index}]"


def check_index(info: ImageInfo, index: int | None) -> int | None:
    """``index`` validated for image ``info`` (``None`` stays ``None``)."""
    if index is None:
        return None
    depth = stack_depth(info)
    if not depth:
        raise StackIndexError(
            f"image {info.name!r} is 2-D ({info.axes}): it has no slices; leave the slice out"
        )
    if not 0 <= int(index) < depth:
        raise StackIndexError(
            f"slice {index} is outside image {info.name!r}: it has {depth} "
            f"{info.axes[1]} slices (0..{depth - 1})"
        )
    return int(index)


def clip_region(region: Sequence[int], shape: tuple[int, int]) -> Box:
    """A ``(row0, row1, col0, col1)`` box clipped to an image of ``shape`` (``H, W``).

    Raises
    ------
    ValueError
        Not four numbers, or nothing of the box lies inside the image.
    """
    if len(region) != 4:
        raise ValueError(f"a region is (row0, row1, col0, col1), got {tuple(region)}")
    h, w = shape
    r0, r1, c0, c1 = (int(v) for v in region)
    box = (max(0, min(r0, h)), max(0, min(r1, h)), max(0, min(c0, w)), max(0, min(c1, w)))
    if box[1] <= box[0] or box[3] <= box[2]:
        raise ValueError(
            f"region rows {r0}..{r1}, cols {c0}..{c1} has no pixel inside the image "
            f"({h} x {w}); rows and cols are (start, end) with start < end"
        )
    return box


def valid_window(
    store: ProjectStore, name: str, index: int | None, window: Box | None, shape: tuple[int, ...]
) -> np.ndarray:
    """The valid-pixel mask of one slice/window, reading only that part."""
    valid = store.valid_array(name)
    sel = (*(() if index is None else (index,)), *window_slices(window))
    if valid is not None:
        return np.asarray(valid[sel])
    return np.ones(shape, dtype=bool)


def window_slices(window: Box | None) -> tuple[slice, slice]:
    if window is None:
        return slice(None), slice(None)
    r0, r1, c0, c1 = window
    return slice(r0, r1), slice(c0, c1)


def normalized_window(
    store: ProjectStore,
    name: str,
    norm: Normalization,
    *,
    index: int | None = None,
    window: Box | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The model's bands of image ``name`` normalized for ``norm``, and its valid-pixel mask.

    Only the bands of ``norm`` are read (picked by name), and only slice ``index`` of a stack
    and the ``window`` ``(row0, row1, col0, col1)`` (already inside the image) when given.

    Returns
    -------
    x, valid
        ``C, H, W`` float32 and ``H, W`` bool.

    Raises
    ------
    IncompatibleBandsError
        The image lacks one of the model's bands.
    StackIndexError
        A stack without ``index``, an index outside it, or an index on a 2-D image.
    """
    info = store.image_info(name)
    idx = norm.band_indices(info.band_names, what=f"image {name!r}")
    index = check_index(info, index)
    if stack_depth(info) and index is None:
        raise StackIndexError(
            f"image {name!r} is a {info.axes} stack of {stack_depth(info)} slices: read one "
            f"slice at a time (index 0..{stack_depth(info) - 1})"
        )
    arr = store.image(name)
    spatial = (*(() if index is None else (index,)), *window_slices(window))
    if idx == list(range(arr.shape[0])):
        data = np.asarray(arr[(slice(None), *spatial)])
    elif idx == list(range(idx[0], idx[-1] + 1)):
        data = np.asarray(arr[(slice(idx[0], idx[-1] + 1), *spatial)])
    else:
        data = np.asarray(arr.oindex[(np.asarray(idx), *spatial)])
    valid = valid_window(store, name, index, window, data.shape[1:])
    rows = (window[0] if window is not None else 0, int(info.spatial_shape[-2]))
    return norm.apply(data, valid, rows), valid


# ---------------------------------------------------------------------------- prediction
def halo_box(box: Box, depth: tuple[int, int], shape: tuple[int, int]) -> Box:
    """``box`` (row0, row1, col0, col1) grown by ``depth`` (rows, cols) on every side and cut at
    the edges of an image of ``shape``: the part of the image a block with its halo covers."""
    (r0, r1, c0, c1), (dy, dx), (h, w) = box, depth, shape
    return max(0, r0 - dy), min(h, r1 + dy), max(0, c0 - dx), min(w, c1 + dx)


def context_window(
    clf: Classifier, box: Box, shape: tuple[int, int]
) -> tuple[Box, tuple[slice, slice]]:
    """The window to predict for ``box`` of an image of ``shape``, and ``box`` inside it.

    The window starts on a multiple of the network's alignment, so that its pooling grid is the
    one of a whole-image prediction, and carries ``halo`` pixels of real context on every side:
    the box's pixels then equal those of a whole-image prediction.
    """
    r0, r1, c0, c1 = box
    h, w = shape
    halo = int(getattr(clf, "halo", 0))
    align = clf.align
    y0, x0 = max(r0 - halo, 0) // align * align, max(c0 - halo, 0) // align * align
    window = (y0, min(r1 + halo, h), x0, min(c1 + halo, w))
    return window, (slice(r0 - y0, r1 - y0), slice(c0 - x0, c1 - x0))
