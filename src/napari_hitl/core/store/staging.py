"""Writing one image, complete, into a hidden folder before it joins the store."""

from __future__ import annotations

import hashlib
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from napari_hitl.core.errors import (
    InputFileError,
)
from napari_hitl.core.io.bands import (
    BandInfo,
    default_rgb,
    is_height_band,
    robust_stats,
    subsample_for_stats,
    wavelength_for_name,
)
from napari_hitl.core.io.rasters import Raster
from napari_hitl.core.progress import CancelToken, Progress
from napari_hitl.core.store.classes import (
    ClassInfo,
)
from napari_hitl.core.store.layout import (
    ATTR,
    LABEL_DTYPE,
    PROVENANCE_HUMAN,
    PROVENANCE_UNLABELED,
    ImageInfo,
    spatial_chunks,
)
from napari_hitl.core.store.ngff import (
    NGFF_VERSION,
    dimension_names,
    image_attrs,
    image_label_attrs,
    label_axes,
    label_levels,
    multiscale,
)
from napari_hitl.core.store.pyramid import (
    create_image_level,
    level_count,
    level_shape,
    pyramid_tiles,
    spatial_tiles,
    write_level_tile,
)


@dataclass
class ImportItem:
    """One image to import: its name in the store, its pixels and optional human labels."""

    name: str
    raster: Raster
    labels: np.ndarray | None = None


def stage_image(
    staging: Path,
    item: ImportItem,
    classes: Sequence[ClassInfo],
    rgb: tuple[int, ...] | None,
    units: Sequence[str | None] | None,
    wavelengths: Sequence[float | None] | None,
    pyramid: bool | None,
    cancel: CancelToken | None,
    done: int,
    total: int,
) -> Generator[Progress, None, ImageInfo]:
    """Write one image, complete, into the hidden folder ``staging`` (not yet in the store)."""
    raster, name = item.raster, item.name
    src = raster.sources[0] if raster.sources else name
    spatial = raster.spatial_shape
    dtype = np.dtype(np.uint8) if raster.dtype.kind == "b" else raster.dtype
    shape = (raster.n_bands, *spatial)
    group = zarr.open_group(str(staging), mode="w-", zarr_format=3)
    data_arr = create_image_level(group, 0, shape, dtype, raster.axes)
    hitl = group.create_group("hitl")
    invalid_total = 0
    valid_arr = None
    hasher = hashlib.blake2b(digest_size=16)
    hasher.update(f"{shape}|{dtype.str}".encode())
    tiles = list(spatial_tiles(spatial))
    n_levels = level_count(spatial, pyramid)
    level_tiles = pyramid_tiles(spatial, n_levels)
    for i, tile in enumerate(tiles):
        if cancel is not None:
            cancel.raise_if_cancelled()
        try:
            block = np.asarray(raster.data[(slice(None), *tile)])
        except Exception as exc:  # damaged file found only when its pixels are read
            raise InputFileError(
                src, f"cannot read the pixel data ({type(exc).__name__}: {exc})"
            ) from exc
        if block.dtype != dtype:
            block = block.astype(dtype)
        data_arr[(slice(None), *tile)] = block
        hasher.update(np.ascontiguousarray(block).tobytes())
        invalid = invalid_mask(block, raster.nodata)
        n_invalid = int(invalid.sum())
        if n_invalid:
            if valid_arr is None:
                valid_arr = hitl.create_array(
                    "valid",
                    shape=spatial,
                    dtype=bool,
                    chunks=spatial_chunks(spatial),
                    fill_value=True,
                    dimension_names=dimension_names(raster.axes[1:]),
                )
            valid_arr[tile] = ~invalid
            invalid_total += n_invalid
        yield Progress(done + i + 1, total, f"importing {name}: tile {i + 1}/{len(tiles)}")
    for j, (level, tile) in enumerate(level_tiles):
        if cancel is not None:
            cancel.raise_if_cancelled()
        write_level_tile(group, level, tile, raster.axes)
        yield Progress(
            done + len(tiles) + j + 1, total, f"importing {name}: pyramid level {level}/{n_levels}"
        )
    bands = band_infos(raster, data_arr, valid_arr, units, wavelengths)
    info = ImageInfo(
        name=name,
        axes=raster.axes,
        shape=shape,
        dtype=dtype.str,
        bands=bands,
        rgb=rgb or default_rgb(bands),  # type: ignore[arg-type]
        nodata=raster.nodata,
        georef=raster.georef,
        source_hash=hasher.hexdigest(),
        sources=[str(s) for s in raster.sources],
        invalid_pixels=invalid_total,
    )
    group.attrs.update({"ome": ngff_image_attrs(info, n_levels), ATTR: info.to_json()})
    create_label_arrays(group, spatial, item.labels, name, classes, raster.axes, n_levels)
    return info


def invalid_mask(block: np.ndarray, nodata: float | None) -> np.ndarray:
    """Pixels (over the band axis) that are NaN/inf in any band or equal nodata in all bands."""
    invalid = np.zeros(block.shape[1:], dtype=bool)
    if block.dtype.kind == "f":
        invalid |= ~np.all(np.isfinite(block), axis=0)
    if nodata is not None and np.isfinite(nodata):
        invalid |= np.all(block == nodata, axis=0)
    return invalid


def band_infos(
    raster: Raster,
    data_arr: zarr.Array,
    valid_arr: zarr.Array | None,
    units: Sequence[str | None] | None,
    wavelengths: Sequence[float | None] | None,
) -> list[BandInfo]:
    sub = subsample_for_stats(data_arr.shape)
    sample = np.asarray(data_arr[sub])
    valid = np.asarray(valid_arr[sub[1:]]) if valid_arr is not None else None
    bands = []
    for i, band_name in enumerate(raster.band_names):
        values = sample[i] if valid is None else sample[i][valid]
        role = raster.roles[i] if i < len(raster.roles) else "spectral"
        if role == "spectral" and is_height_band(band_name):
            role = "dsm"
        wave = wavelengths[i] if wavelengths and i < len(wavelengths) else None
        if wave is None and role == "spectral":
            wave = wavelength_for_name(band_name)
        unit = units[i] if units and i < len(units) else None
        if unit is None and raster.georef is not None:  # GDAL's unit type, when the file has one
            unit = raster.georef.band_metadata(i).get("unittype") or None
        if unit is None and role == "dsm":
            unit = "m"
        bands.append(
            BandInfo(
                name=band_name,
                role=role,
                unit=unit,
                wavelength_nm=wave,
                stats=robust_stats(values, None),
            )
        )
    return bands


def ngff_image_attrs(info: ImageInfo, levels: int = 0) -> dict[str, Any]:
    """The ``ome`` attributes of an image: multiscales in NGFF axis order and omero channels."""
    colors = {info.rgb[0]: "FF0000", info.rgb[1]: "00FF00", info.rgb[2]: "0000FF"}
    channels = []
    for i, band in enumerate(info.bands):
        s = band.stats
        window = (
            {"start": s.p1, "end": s.p99, "min": s.min, "max": s.max}
            if s is not None and s.valid_pixels
            else {"start": 0, "end": 1, "min": 0, "max": 1}
        )
        channels.append(
            {
                "label": band.name,
                "color": colors.get(i, "FFFFFF"),
                "window": window,
                "active": i in info.rgb,
            }
        )
    return image_attrs(info.name, info.axes, levels, channels)


def class_label_attrs(classes: Sequence[ClassInfo]) -> dict[str, Any]:
    """NGFF ``image-label`` metadata: class colours and names for other OME-Zarr tools."""
    return image_label_attrs([(c.value, c.rgba, c.name) for c in classes])


def create_label_arrays(
    group: zarr.Group,
    spatial: tuple[int, ...],
    labels: np.ndarray | None,
    name: str,
    classes: Sequence[ClassInfo],
    axes: str,
    levels: int = 0,
) -> None:
    """The NGFF labels group (one level per image level) and the provenance of a staged image
    (``axes``: the image's channel-first axes)."""
    labels_group = group.create_group("labels")
    labels_group.attrs.update({"ome": {"version": NGFF_VERSION, "labels": ["annotations"]}})
    ann = labels_group.create_group("annotations")
    letters = label_axes(axes)
    ann.attrs.update(
        {
            "ome": {
                "version": NGFF_VERSION,
                "multiscales": [multiscale(f"{name} annotations", letters, levels)],
                "image-label": class_label_attrs(classes),
            }
        }
    )
    names = dimension_names(letters)
    arrays = [
        ann.create_array(
            str(k),
            shape=level_shape(spatial, k),
            dtype=LABEL_DTYPE,
            chunks=spatial_chunks(level_shape(spatial, k)),
            fill_value=0,
            dimension_names=names,
        )
        for k in range(levels + 1)
    ]
    prov = group["hitl"].create_array(  # type: ignore[union-attr]
        "provenance",
        shape=spatial,
        dtype=LABEL_DTYPE,
        chunks=spatial_chunks(spatial),
        fill_value=0,
        dimension_names=names,
    )
    if labels is not None and np.any(labels):
        for arr, level in zip(arrays, label_levels(labels, levels), strict=True):
            arr[...] = level
        prov[...] = np.where(labels > 0, PROVENANCE_HUMAN, PROVENANCE_UNLABELED).astype(LABEL_DTYPE)
