"""What other OME-Zarr tools see of a project store: NGFF 0.5 metadata and axis order.

The store keeps every image as an OME-Zarr 0.5 image group (``images/<name>``) with its labels
as an NGFF ``image-label`` group (``labels/annotations``) that has one level per image level.
Everything napari-hitl adds lives beside them (``hitl/``, the ``napari_hitl`` attributes) and
other tools ignore it. The root follows the ``bioformats2raw.layout`` convention: an ``OME``
group whose ``series`` attribute lists the image groups, so a reader that understands the
convention finds every image of a project.

Axis order. Inside napari-hitl an image is always channel first (``C, [Z|T,] Y, X``). NGFF
requires a time axis before the channel axis, so a time stack is written ``T, C, Y, X`` on disk
and read back through :class:`AxisView`, which presents it channel first. Images written before
this module existed (``C, T, Y, X`` on disk, arrays without ``dimension_names``) are read as
they are.

This module belongs to the store: other modules use :class:`~napari_hitl.core.store.ProjectStore`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

NGFF_VERSION = "0.5"
BIOFORMATS2RAW_LAYOUT = 3
AXIS_TYPES = {"c": "channel", "z": "space", "t": "time", "y": "space", "x": "space"}


def disk_axes(axes: str) -> str:
    """The order in which an image with (channel-first) ``axes`` is written: NGFF order, with
    ``T`` before ``C`` (``"CTYX"`` → ``"TCYX"``); every other order is kept."""
    axes = axes.upper()
    if "T" in axes and "C" in axes:
        return "T" + "C" + "".join(a for a in axes if a not in "TC")
    return axes


def dimension_names(axes: str) -> tuple[str, ...]:
    """Zarr ``dimension_names`` for axis letters (``"TCYX"`` → ``("t", "c", "y", "x")``)."""
    return tuple(a.lower() for a in axes)


def ngff_axes(axes: str) -> list[dict[str, str]]:
    """NGFF ``axes`` entries for axis letters, in the order given."""
    return [{"name": a.lower(), "type": AXIS_TYPES[a.lower()]} for a in axes]


def level_scale(axes: str, level: int) -> list[float]:
    """Scale of pyramid ``level`` per axis: Y and X double at each level, the others stay."""
    return [float(2**level) if a in "YX" else 1.0 for a in axes.upper()]


def multiscale(name: str, axes: str, levels: int) -> dict[str, Any]:
    """One NGFF ``multiscales`` entry with datasets ``"0"`` … ``str(levels)``."""
    return {
        "name": name,
        "axes": ngff_axes(axes),
        "datasets": [
            {
                "path": str(k),
                "coordinateTransformations": [{"type": "scale", "scale": level_scale(axes, k)}],
            }
            for k in range(levels + 1)
        ],
    }


def image_attrs(
    name: str,
    axes: str,
    levels: int,
    channels: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    """The ``ome`` attributes of an image group (``axes``: channel first, as napari-hitl holds
    them; written in :func:`disk_axes` order)."""
    return {
        "version": NGFF_VERSION,
        "multiscales": [multiscale(name, disk_axes(axes), levels)],
        "omero": {"channels": list(channels), "rdefs": {"model": "color"}},
    }


def image_label_attrs(colors: Sequence[tuple[int, Sequence[float], str]]) -> dict[str, Any]:
    """NGFF ``image-label`` metadata from ``(value, rgba in 0..1, class name)`` per class."""
    return {
        "source": {"image": "../../"},
        "colors": [
            {"label-value": int(v), "rgba": [round(c * 255) for c in rgba]} for v, rgba, _ in colors
        ],
        "properties": [{"label-value": int(v), "class": str(n)} for v, _, n in colors],
    }


def label_axes(axes: str) -> str:
    """Axis letters of the labels of an image with channel-first ``axes`` (no channel)."""
    return "".join(a for a in disk_axes(axes) if a != "C")


def label_levels(labels: np.ndarray, levels: int) -> list[np.ndarray]:
    """Label pyramid by nearest-neighbour subsampling: level ``k`` takes every ``2**k``-th pixel
    of Y and X (views, not copies). The shapes match :func:`~napari_hitl.core.store.level_shape`
    (half sizes rounded up)."""
    return [labels[..., :: 2**k, :: 2**k] for k in range(levels + 1)]


class AxisView:
    """A zarr array stored in ``stored`` axis order, read and written in ``shown`` order.

    Supports what the store's callers use: ``shape``, ``dtype``, ``ndim``, ``chunks``, basic
    indexing (integers and slices), ``oindex`` (integer arrays too), assignment and
    ``np.asarray``; :meth:`to_dask` for lazy whole-array use.
    """

    def __init__(self, array: Any, stored: str, shown: str) -> None:
        if sorted(stored) != sorted(shown):
            raise ValueError(f"axes {stored!r} and {shown!r} differ")
        self.array = array
        self.stored = stored
        self.shown = shown
        self._to_stored = [shown.index(a) for a in stored]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape[self.stored.index(a)] for a in self.shown)

    @property
    def chunks(self) -> tuple[int, ...]:
        return tuple(self.array.chunks[self.stored.index(a)] for a in self.shown)

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    @property
    def ndim(self) -> int:
        return len(self.shown)

    @property
    def attrs(self) -> Any:
        return self.array.attrs

    def _keys(self, key: Any) -> tuple[tuple[Any, ...], list[int]]:
        """The key in stored order, and how to order the axes that remain."""
        if not isinstance(key, tuple):
            key = (key,)
        if any(k is Ellipsis for k in key):
            i = next(i for i, k in enumerate(key) if k is Ellipsis)
            fill = (slice(None),) * (self.ndim - len(key) + 1)
            key = (*key[:i], *fill, *key[i + 1 :])
        key = (*key, *(slice(None),) * (self.ndim - len(key)))
        stored_key = tuple(key[i] for i in self._to_stored)
        kept_stored = [a for a, k in zip(self.stored, stored_key, strict=True) if not _drops(k)]
        kept_shown = [a for a, k in zip(self.shown, key, strict=True) if not _drops(k)]
        return stored_key, [kept_stored.index(a) for a in kept_shown]

    def __getitem__(self, key: Any) -> np.ndarray:
        stored_key, order = self._keys(key)
        return np.transpose(np.asarray(self.array[stored_key]), order)

    def __setitem__(self, key: Any, value: Any) -> None:
        stored_key, order = self._keys(key)
        value = np.asarray(value)
        if value.ndim == len(order):
            value = np.transpose(value, np.argsort(order))
        self.array[stored_key] = value

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[...]
        return out if dtype is None else out.astype(dtype)

    @property
    def oindex(self) -> _OIndex:
        return _OIndex(self)

    def to_dask(self, chunks: Any = None) -> Any:
        """A dask array over the stored chunks, transposed to the shown order."""
        import dask.array as da

        lazy = da.from_zarr(self.array)
        lazy = lazy.transpose([self.stored.index(a) for a in self.shown])
        return lazy if chunks is None else lazy.rechunk(chunks)


class _OIndex:
    def __init__(self, view: AxisView) -> None:
        self.view = view

    def __getitem__(self, key: Any) -> np.ndarray:
        stored_key, order = self.view._keys(key)
        return np.transpose(np.asarray(self.view.array.oindex[stored_key]), order)


def _drops(key: Any) -> bool:
    """Whether an index removes its axis (an integer does; a slice or an array does not)."""
    return isinstance(key, int | np.integer)


def shown(array: Any) -> Any:
    """``array`` as napari-hitl reads it, channel first: the array itself when it is stored
    that way, otherwise an :class:`AxisView`. The stored order comes from the array's
    ``dimension_names`` (arrays without them, written before NGFF 0.5 order, are stored as
    shown); the shown order is the channel, then the other axes in their stored order."""
    names = getattr(array.metadata, "dimension_names", None)
    if not names or any(n is None for n in names):
        return array
    stored = "".join(str(n).upper() for n in names)
    if "C" not in stored or stored[0] == "C":
        return array
    return AxisView(array, stored, "C" + stored.replace("C", ""))


def as_dask(array: Any, chunks: Any = None) -> Any:
    """A dask array over an image array returned by the store (plain or :class:`AxisView`)."""
    if isinstance(array, AxisView):
        return array.to_dask(chunks)
    import dask.array as da

    return da.from_zarr(array) if chunks is None else da.from_zarr(array, chunks=chunks)


# ---------------------------------------------------------------- the store's root
def root_ome_attrs() -> dict[str, Any]:
    """``ome`` attributes of the store root (the bioformats2raw layout)."""
    return {"version": NGFF_VERSION, "bioformats2raw.layout": BIOFORMATS2RAW_LAYOUT}


def write_series(root: Path, names: Sequence[str]) -> None:
    """Write ``OME/zarr.json``, whose ``series`` lists the image groups ``names`` of the store
    at ``root`` (replaced atomically).

    No ``OME/METADATA.ome.xml`` is written: readers that find images through it assume the
    numbered paths ``0/``, ``1/`` … of bioformats2raw output, which a project store does not have.
    """
    folder = root / "OME"
    folder.mkdir(exist_ok=True)
    meta = {
        "zarr_format": 3,
        "node_type": "group",
        "attributes": {"ome": {"version": NGFF_VERSION, "series": [f"images/{n}" for n in names]}},
    }
    _atomic_write(folder / "zarr.json", json.dumps(meta, indent=2))


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
