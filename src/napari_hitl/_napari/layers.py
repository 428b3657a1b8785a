"""Turn store contents into napari layer data, and keep layers in step by name.

Layer names follow one scheme so that widgets find and update layers in place:
``"<image>"`` (RGB composite), ``"<image> bands"`` (all bands, band axis as a slider) and
``"<image> labels"``. Every layer carries ``metadata["napari_hitl"]`` with the store path, the
image name and the layer's role.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np

from napari_hitl.core.bands import (
    BandInfo,
    default_rgb,
    robust_stats,
    subsample_for_stats,
    wavelength_for_name,
)
from napari_hitl.core.classes import ClassInfo
from napari_hitl.core.store import ImageInfo, ProjectStore

LayerData = tuple[Any, dict[str, Any], str]
META = "napari_hitl"


def composite_name(image: str) -> str:
    """Name of an image's RGB composite layer."""
    return image


def bands_name(image: str) -> str:
    """Name of an image's all-bands layer."""
    return f"{image} bands"


def labels_name(image: str) -> str:
    """Name of an image's labels layer."""
    return f"{image} labels"


def _window(band: BandInfo) -> tuple[float, float]:
    s = band.stats
    if s is None or not s.valid_pixels or not np.isfinite(s.p1) or s.p99 <= s.p1:
        lo = s.min if s is not None and np.isfinite(s.min) else 0.0
        hi = s.max if s is not None and np.isfinite(s.max) and s.max > lo else lo + 1.0
        return float(lo), float(hi)
    return float(s.p1), float(s.p99)


def rgb_composite(bands: Any, infos: Sequence[BandInfo], rgb: Sequence[int]) -> Any:
    """A lazily computed RGB composite in [0, 1], bands stretched between their 1st and 99th
    percentiles; returns ``[Z|T,] Y, X, 3`` float32 (dask when ``bands`` is lazy)."""
    arr = da.asarray(bands) if not isinstance(bands, np.ndarray) else bands
    chans = []
    for i in rgb:
        lo, hi = _window(infos[i])
        c = (arr[i].astype(np.float32) - lo) / np.float32(hi - lo)
        chans.append(c.clip(0, 1) if isinstance(c, da.Array) else np.clip(c, 0, 1))
    stack = da.stack(chans, axis=-1) if isinstance(arr, da.Array) else np.stack(chans, axis=-1)
    return stack.astype(np.float32)


def label_colormap(classes: Sequence[ClassInfo]) -> dict[int | None, Any]:
    """Colour dict for a Labels layer: each class its colour, everything else transparent."""
    colors: dict[int | None, Any] = {None: (0, 0, 0, 0), 0: (0, 0, 0, 0)}
    for c in classes:
        colors[c.value] = c.rgba
    return colors


def direct_colormap(classes: Sequence[ClassInfo]) -> Any:
    """A napari ``DirectLabelColormap`` for the classes."""
    from napari.utils.colormaps import DirectLabelColormap

    return DirectLabelColormap(color_dict=label_colormap(classes))


def _axis_labels(axes: str) -> tuple[str, ...]:
    names = {"C": "band", "Z": "z", "T": "t", "Y": "y", "X": "x"}
    return tuple(names[a] for a in axes)


def _meta(store: ProjectStore, info: ImageInfo, role: str) -> dict[str, Any]:
    return {
        META: {
            "store": str(store.path),
            "image": info.name,
            "role": role,
            "band_names": info.band_names,
            "rgb": list(info.rgb),
            "dsm_band": info.dsm_band,
            "crs": info.georef.crs if info.georef else None,
        }
    }


def store_image_layers(store: ProjectStore, name: str, labels: bool = True) -> list[LayerData]:
    """Layer data for one image of a store: composite, all bands (hidden), labels."""
    info = store.image_info(name)
    bands = da.from_zarr(store.image(name))
    out: list[LayerData] = []
    if info.shape[0] >= 3:
        out.append(
            (
                rgb_composite(bands, info.bands, info.rgb),
                {
                    "name": composite_name(name),
                    "rgb": True,
                    "axis_labels": _axis_labels(info.axes[1:]),
                    "metadata": _meta(store, info, "composite"),
                },
                "image",
            )
        )
    lo_hi = [_window(b) for b in info.bands]
    out.append(
        (
            bands,
            {
                "name": bands_name(name),
                "visible": info.shape[0] < 3,
                "axis_labels": _axis_labels(info.axes),
                "contrast_limits": [min(v[0] for v in lo_hi), max(v[1] for v in lo_hi)]
                if info.shape[0] > 1
                else list(lo_hi[0]),
                "metadata": _meta(store, info, "bands"),
            },
            "image",
        )
    )
    if labels:
        out.append(
            (
                store.labels(name),
                {
                    "name": labels_name(name),
                    "colormap": direct_colormap(store.classes),
                    "axis_labels": _axis_labels(info.axes[1:]),
                    "metadata": _meta(store, info, "labels"),
                },
                "labels",
            )
        )
    return out


def raster_layers(data: Any, band_names: Sequence[str], name: str) -> list[LayerData]:
    """Layers for a plain multiband raster (not in a store): all bands + an RGB composite."""
    arr = da.asarray(data) if not isinstance(data, np.ndarray) else data
    out: list[LayerData] = []
    meta = {META: {"role": "bands", "band_names": list(band_names), "image": name}}
    if arr.shape[0] == 1:
        return [(arr[0], {"name": name, "metadata": meta}, "image")]
    if arr.shape[0] >= 3:
        sample = np.asarray(arr[subsample_for_stats(arr.shape)])
        infos = [
            BandInfo(name=n, wavelength_nm=wavelength_for_name(n), stats=robust_stats(sample[i]))
            for i, n in enumerate(band_names)
        ]
        rgb = default_rgb(infos)
        out.append((rgb_composite(arr, infos, rgb), {"name": f"{name} RGB", "rgb": True}, "image"))
    out.append((arr, {"name": name, "visible": arr.shape[0] < 3, "metadata": meta}, "image"))
    return out
