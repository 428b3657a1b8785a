"""Turn store contents into napari layer data, and keep layers in step by name.

Layer names follow one scheme so that widgets find and update layers in place:
``"<image>"`` (RGB composite), ``"<image> bands"`` (all bands, band axis as a slider),
``"<image> labels"`` and ``"<image> height"`` (the height band, when one is chosen). Every layer
carries ``metadata["napari_hitl"]`` with the store path, the image name and the layer's role.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import dask.array as da
import numpy as np

from napari_hitl._napari.names import bands_name, composite_name, height_name, labels_name
from napari_hitl.core.io.bands import (
    BandInfo,
    default_rgb,
    robust_stats,
    subsample_for_stats,
    wavelength_for_name,
)
from napari_hitl.core.store import ImageInfo, ProjectStore
from napari_hitl.core.store.classes import ClassInfo

LayerData = tuple[Any, dict[str, Any], str]
META = "napari_hitl"


CLASS_LAYER_SUFFIXES = (" prediction", " accepted")  # labels layers of the learning loop


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
    """Layer data for one image of a store: composite, all bands (hidden), labels.

    Images are read lazily (dask over zarr); an image stored with a pyramid (see
    :func:`napari_hitl.core.store.import_raster`) gives multiscale image layers, so napari reads
    only the level and the part it shows. Labels are an ordinary (in-memory) array to paint in.
    """
    info = store.image_info(name)
    levels = store.image_dask_levels(name)
    multiscale = len(levels) > 1
    bands: Any = levels if multiscale else levels[0]
    out: list[LayerData] = []
    if info.shape[0] >= 3:
        out.append(
            (
                composite_data(store, name),
                {
                    "name": composite_name(name),
                    "rgb": True,
                    "multiscale": multiscale,
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
                "multiscale": multiscale,
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
        state = store.label_state(name)
        meta = _meta(store, info, "labels")
        meta[META]["base"] = state.labels.copy()  # what the person's strokes are compared with
        meta[META]["generation"] = state.generation
        out.append(
            (
                state.labels,
                {
                    "name": labels_name(name),
                    "colormap": direct_colormap(store.classes),
                    "axis_labels": _axis_labels(info.axes[1:]),
                    "metadata": meta,
                },
                "labels",
            )
        )
    return out


def load_stored_labels(layer: Any, store: ProjectStore, name: str) -> None:
    """Show image ``name``'s stored labels in ``layer`` and remember them as the layer's base.

    Every later :func:`save_layer_labels` saves only what the person changed since.
    """
    state = store.label_state(name)
    layer.data = state.labels
    meta = layer.metadata.setdefault(META, {})
    meta["base"] = state.labels.copy()
    meta["generation"] = state.generation


def save_layer_labels(store: ProjectStore, layer: Any) -> int:
    """Save the person's strokes in a labels layer of ``store``; returns stored pixels changed.

    Only the pixels that differ from what the layer was loaded with (its base) are saved, on
    top of what the store holds now: a push, undo or save another program made meanwhile is
    kept, and the layer is updated to show it. A layer without a base (made by hand) is
    compared with the stored labels instead.
    """
    meta = layer.metadata.setdefault(META, {})
    data = np.asarray(layer.data)
    saved = store.save_strokes(meta["image"], data, base=meta.get("base"))
    if saved.moved_on:
        layer.data = saved.labels.copy()
    meta["base"] = saved.labels.copy()
    meta["generation"] = saved.generation
    return saved.changed


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


def composite_data(store: ProjectStore, name: str, rgb: Sequence[int] | None = None) -> Any:
    """The lazily computed RGB composite of a stored image.

    Parameters
    ----------
    store, name
        The project store and the image.
    rgb
        Band indices (red, green, blue); the image's stored choice when omitted.

    Returns
    -------
    dask.array.Array or list of dask.array.Array
        ``[Z|T,] Y, X, 3`` float32 in [0, 1], the data of the ``"<image>"`` layer; one per
        pyramid level (full size first) when the image has a pyramid.
    """
    info = store.image_info(name)
    levels = [
        rgb_composite(level, info.bands, rgb or info.rgb) for level in store.image_dask_levels(name)
    ]
    return levels if len(levels) > 1 else levels[0]


def height_layer(
    store: ProjectStore, name: str, band: int | None = None, visible: bool = True
) -> LayerData:
    """Layer data of an image's height band, shown as the ``"<image> height"`` layer.

    Parameters
    ----------
    store, name
        The project store and the image.
    band
        Band index; the image's height band (role ``"dsm"``) when omitted.
    visible
        Whether the layer is shown.

    Returns
    -------
    LayerData
        ``(data, kwargs, "image")`` with a terrain colormap and the band's contrast window.

    Raises
    ------
    ValueError
        No ``band`` given and the image has no height band.
    """
    info = store.image_info(name)
    band = info.dsm_band if band is None else band
    if band is None:
        raise ValueError(f"image {name!r} has no height band; choose one")
    kwargs = {
        "name": height_name(name),
        "colormap": "gist_earth",
        "contrast_limits": list(_window(info.bands[band])),
        "visible": visible,
        "axis_labels": _axis_labels(info.axes[1:]),
        "metadata": _meta(store, info, "height"),
    }
    kwargs["metadata"][META]["band"] = band
    levels = [level[band] for level in store.image_dask_levels(name)]
    kwargs["multiscale"] = len(levels) > 1
    return (levels if len(levels) > 1 else levels[0]), kwargs, "image"


def same_store(path: Any, store: ProjectStore) -> bool:
    """Whether ``path`` (from a layer's metadata) names the directory of ``store``."""
    if not path:
        return False
    return os.path.realpath(os.fspath(path)) == os.path.realpath(store.path)


def class_layers(layers: Iterable[Any], store: ProjectStore) -> list[Any]:
    """The open Labels layers that show class values of ``store``.

    These are its labels layers (role ``"labels"`` in ``metadata["napari_hitl"]``) and the
    learning loop's ``"<image> prediction"`` and ``"<image> accepted"`` layers of its images.
    """
    from napari.layers import Labels

    images = set(store.image_names())
    loop_names = {image + suffix for image in images for suffix in CLASS_LAYER_SUFFIXES}
    out = []
    for layer in layers:
        if not isinstance(layer, Labels):
            continue
        meta = layer.metadata.get(META, {})
        if (meta.get("role") == "labels" and same_store(meta.get("store"), store)) or (
            layer.name in loop_names
        ):
            out.append(layer)
    return out


def recolor_class_layers(layers: Iterable[Any], store: ProjectStore) -> list[Any]:
    """Give every layer of :func:`class_layers` the colours of the store's classes.

    Returns
    -------
    list
        The layers recoloured.
    """
    targets = class_layers(layers, store)
    classes = store.classes
    for layer in targets:
        layer.colormap = direct_colormap(classes)  # one colormap object per layer
    return targets
