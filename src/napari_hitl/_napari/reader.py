"""napari reader: project stores, multiband TIFF/.npy files and folders of images."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from napari_hitl._napari.layers import LayerData, raster_layers, store_image_layers
from napari_hitl.core.errors import HitlError
from napari_hitl.core.io.rasters import RASTER_SUFFIXES, read_raster
from napari_hitl.core.store import ProjectStore

ReaderFunction = Callable[[Any], list[LayerData]]
_FOLDER_SUFFIXES = RASTER_SUFFIXES - {".zarr"}


def _is_store(path: str) -> bool:
    return (
        os.path.isdir(path)
        and (Path(path) / "images").is_dir()
        and (Path(path) / "zarr.json").is_file()
    )


def get_reader(path: str | list[str]) -> ReaderFunction | None:
    """Return a reader for ``path`` if it is something napari-hitl opens, else ``None``.

    Project stores (``*.zarr`` with a napari-hitl schema), TIFF files (multiband shown with a band
    axis plus an RGB composite), ``.npy`` arrays and folders of such images.
    """
    paths = path if isinstance(path, list) else [path]
    if not paths:
        return None
    for p in paths:
        p = str(p)
        if _is_store(p):
            continue
        if os.path.isdir(p):
            if not any(Path(p, f).suffix.lower() in _FOLDER_SUFFIXES for f in os.listdir(p)):
                return None
            continue
        if Path(p).suffix.lower() not in {".tif", ".tiff", ".npy"}:
            return None
    return read_paths


def read_paths(path: str | list[str]) -> list[LayerData]:
    """Read every path into layer data (see :func:`get_reader`)."""
    paths = path if isinstance(path, list) else [path]
    out: list[LayerData] = []
    for p in map(str, paths):
        if _is_store(p):
            out.extend(read_store(p))
        elif os.path.isdir(p):
            out.extend(read_folder(p))
        else:
            raster = read_raster(p)
            out.extend(raster_layers(raster.data, raster.band_names, Path(p).stem))
    return out


def read_store(path: str) -> list[LayerData]:
    """All images of a project store, the first one visible and the rest hidden."""
    store = ProjectStore.open(path)
    out: list[LayerData] = []
    for i, name in enumerate(store.image_names()):
        layers = store_image_layers(store, name)
        if i > 0:
            for _data, kwargs, _kind in layers:
                kwargs["visible"] = False
        out.extend(layers)
    return out


def read_folder(path: str) -> list[LayerData]:
    """Images in a folder: stacked along a new first axis when they share a shape, else one layer
    each. Files that cannot be read are skipped with a warning naming them."""
    import warnings

    files = sorted(f for f in Path(path).iterdir() if f.suffix.lower() in _FOLDER_SUFFIXES)
    rasters = []
    for f in files:
        try:
            rasters.append((f.stem, read_raster(f)))
        except HitlError as exc:
            warnings.warn(f"skipped {exc}", stacklevel=2)
    if not rasters:
        return []
    shapes = {r.data.shape for _n, r in rasters}
    if len(shapes) == 1:
        import dask.array as da

        stack = da.stack([da.asarray(r.data) for _n, r in rasters], axis=1)  # C, N, Y, X
        first = rasters[0][1]
        layers = raster_layers(stack, first.band_names, Path(path).name)
        for _d, kwargs, _k in layers:
            kwargs.setdefault("metadata", {})["napari_hitl_files"] = [n for n, _r in rasters]
        return layers
    out: list[LayerData] = []
    for name, r in rasters:
        out.extend(raster_layers(np.asarray(r.data), r.band_names, name))
    return out
