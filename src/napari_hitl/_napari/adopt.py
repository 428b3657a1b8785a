"""Start a project from any napari image layer: its data become an image of a project store.

The loop works on images held by a project store (labels, provenance and models live there). A
person who opened an image some other way — a TIFF through another reader, a layer made in the
console — gets a store next to the file (or in ``~/napari-hitl/``) holding that image, and a
labels layer to paint in. Opening the same layer again reuses the store: the labels are still
there.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np

from napari_hitl.core.errors import HitlError
from napari_hitl.core.io.rasters import Raster
from napari_hitl.core.progress import CancelToken, Progress
from napari_hitl.core.store import ProjectStore, import_raster
from napari_hitl.core.store.classes import make_classes

MAX_BANDS = 64  # a 3-D layer with more planes than this is a Z stack, not bands
DEFAULT_CLASSES = ("class 1", "class 2")


def raster_from_layer(data: Any, rgb: bool, band_names: list[str] | None = None) -> Raster:
    """A :class:`Raster` from an image layer's data.

    ``Y, X`` → one band; ``Y, X, 3|4`` RGB(A) → three bands R, G, B; ``C, Y, X`` with at most
    :data:`MAX_BANDS` planes (or with ``band_names``) → bands; other ``Z, Y, X`` → a one-band
    stack; ``C, Z, Y, X`` → a multiband stack.

    Raises
    ------
    HitlError
        The layer has a shape the loop cannot use (1-D, or more than 4-D).
    """
    arr = np.asarray(data)
    if rgb:
        arr = np.moveaxis(arr[..., :3], -1, 0)
        return Raster(arr, "C" + "ZYX"[3 - (arr.ndim - 1) :], ["R", "G", "B"])
    if arr.ndim == 2:
        return Raster(arr[None], "CYX", band_names or ["band 1"])
    if arr.ndim == 3 and (band_names or arr.shape[0] <= MAX_BANDS):
        names = band_names or [f"band {i + 1}" for i in range(arr.shape[0])]
        return Raster(arr, "CYX", names)
    if arr.ndim == 3:
        return Raster(arr[None], "CZYX", ["band 1"])
    if arr.ndim == 4:
        names = band_names or [f"band {i + 1}" for i in range(arr.shape[0])]
        return Raster(arr, "CZYX", names)
    raise HitlError(f"an image of shape {arr.shape} cannot be labeled: 2-D to 4-D images only")


def project_path_for(layer_name: str, source_path: str | None) -> Path:
    """Where the project of a layer goes: ``<file stem>.hitl.zarr`` next to its file, or
    ``~/napari-hitl/<layer name>.zarr`` for a layer that has no file."""
    if source_path:
        src = Path(source_path)
        return src.with_name(f"{src.stem}.hitl.zarr")
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", layer_name).strip("_") or "image"
    return Path.home() / "napari-hitl" / f"{safe}.zarr"


def image_name_for(layer_name: str) -> str:
    """A store image name for a layer name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", layer_name).strip("_") or "image"


def adopt_layer(
    path: str | Path,
    name: str,
    data: Any,
    rgb: bool,
    band_names: list[str] | None = None,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, ProjectStore]:
    """Create (or reopen) the project at ``path`` holding the layer as image ``name``.

    An image of that name already in the store is kept as it is (with its labels): reopening
    resumes. A new store starts with two classes, to rename in the Project widget.
    """
    store = ProjectStore.create(path, exist_ok=True)
    if not store.classes:
        store.set_classes(make_classes(list(DEFAULT_CLASSES)))
    if name not in store:
        yield from import_raster(store, raster_from_layer(data, rgb, band_names), name,
                                 cancel=cancel)  # fmt: skip
    return store
