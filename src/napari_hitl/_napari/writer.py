"""napari writers: labels and images to TIFF (GeoTIFF when the layer came from one), PNG, zarr."""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_hitl._napari.layers import META
from napari_hitl.core.io.export import write_raster
from napari_hitl.core.store import ProjectStore


def _source_store(meta: dict[str, Any]) -> ProjectStore | None:
    """The project store the layer came from, if it still opens."""
    info = meta.get(META, {})
    if info.get("store"):
        try:
            return ProjectStore.open(info["store"])
        except Exception:  # the store moved or was deleted
            return None
    return None


def _source_info(meta: dict[str, Any]) -> Any:
    """The store's ImageInfo of the layer's image (for georeferencing and nodata), if any."""
    store = _source_store(meta)
    image = meta.get(META, {}).get("image")
    if store is not None and image:
        try:
            return store.image_info(image)
        except Exception:  # the image was removed: write without georeferencing
            return None
    return None


def _georef_for(meta: dict[str, Any]) -> Any:
    info = _source_info(meta)
    return info.georef if info is not None else None


def write_labels(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write a Labels layer (uint16 unless its values need more) to ``path``."""
    arr = np.asarray(data)
    if (
        arr.dtype.kind in "ui"
        and arr.size
        and arr.max() <= np.iinfo(np.uint16).max
        and arr.min() >= 0
    ):
        arr = arr.astype(np.uint16)
    store = _source_store(meta.get("metadata", {}))
    classes = [(c.value, c.rgba, c.name) for c in store.classes] if store is not None else []
    out = write_raster(
        path,
        arr,
        band_names=[meta.get("name", "labels")],
        georef=_georef_for(meta.get("metadata", {})),
        band_axis=False,
        label_classes=classes,  # a .zarr becomes an NGFF image-label
    )
    return [str(out)]


def write_image(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write an Image layer; a band-axis layer keeps its band names."""
    arr = np.asarray(data)
    info = meta.get("metadata", {}).get(META, {})
    names = info.get("band_names")
    rgb = bool(meta.get("rgb"))
    if rgb:
        arr = np.moveaxis(arr, -1, 0)
        names = None
    band_axis = rgb or (names is not None and arr.ndim >= 3 and len(names) == arr.shape[0])
    source = _source_info(meta.get("metadata", {}))
    out = write_raster(
        path,
        arr,
        band_names=names if band_axis else None,
        georef=source.georef if source else None,
        nodata=source.nodata if source is not None and not rgb else None,
        band_axis=band_axis,
    )
    return [str(out)]
