"""Write rasters out of the store: TIFF/GeoTIFF, PNG, zarr and .npy, exactly (and tables as CSV).

:func:`write_raster` writes one array with its band names and georeferencing;
:func:`export_item` picks the array from a store (``labels``, ``provenance``, ``image`` or any
derived array such as ``prediction`` or ``confidence``) and writes it.
"""

from __future__ import annotations

import csv
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_hitl.core.errors import HitlError
from napari_hitl.core.io.geo import GDAL_METADATA, GDAL_NODATA, GeoRef, gdal_metadata_xml
from napari_hitl.core.store import ATTR, ProjectStore
from napari_hitl.core.tiling import tiles

EXPORT_SUFFIXES = (".tif", ".tiff", ".png", ".zarr", ".npy")


class ExportError(HitlError, ValueError):
    """The array cannot be written in the requested format."""


def write_raster(
    path: str | os.PathLike[str],
    data: np.ndarray,
    *,
    band_names: Sequence[str] | None = None,
    georef: GeoRef | None = None,
    nodata: float | None = None,
    band_axis: bool = True,
    overwrite: bool = True,
    axes: str | None = None,
    gdal_items: Sequence[dict[str, Any]] = (),
    label_classes: Sequence[tuple[int, Sequence[float], str]] | None = None,
) -> Path:
    """Write an array to ``path``; the suffix picks the format.

    The array may be lazy (zarr, dask, the store's image): TIFF (tiled when at least 256²),
    zarr and ``.npy`` are written tile by tile, so memory stays bounded on large images.

    Parameters
    ----------
    path
        ``.tif``/``.tiff`` (GeoTIFF when ``georef`` is given), ``.png`` (integers only, 1/3/4
        bands of uint8 or one band of uint16), ``.zarr`` (an OME-Zarr 0.5 image, with the
        metadata below in its ``napari_hitl`` attributes) or ``.npy``.
    data
        ``C, [Z|T,] Y, X`` when ``band_axis`` else ``[Z|T,] Y, X``.
    band_names, georef, nodata
        Metadata to keep (TIFF: GDAL band descriptions, GeoTIFF tags and GDAL_NODATA).
    band_axis
        Whether the first axis holds bands.
    overwrite
        Replace an existing file.
    axes
        Axis letters of ``data`` (e.g. ``"CTYX"``) for the OME-Zarr metadata; by default
        ``C`` (with ``band_axis``), then ``Z`` for a stack, then ``Y, X``.
    gdal_items
        Further GDAL metadata items (scale, offset, units, tags; see
        :func:`~napari_hitl.core.io.geo.parse_gdal_metadata`) to write into a TIFF.
    label_classes
        For label maps: ``(value, rgba, name)`` per class. A ``.zarr`` is then an NGFF
        ``image-label`` (class colours and names for other OME-Zarr tools).

    Raises
    ------
    ExportError
        Unknown suffix, data the format cannot hold exactly (float or multiband in PNG), or
        the file system refuses the write (a file or folder in the way, no permission, disk
        full); the message names the path. A failed write leaves no partial file behind.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in EXPORT_SUFFIXES:
        raise ExportError(
            f"{p}: unsupported export format {suffix!r}; use {', '.join(EXPORT_SUFFIXES)}"
        )
    if p.exists() and not overwrite:
        raise ExportError(f"{p} exists; pass overwrite to replace it")
    if p.is_dir() and suffix != ".zarr":
        raise ExportError(f"cannot write {p}: a folder of that name is in the way")
    if not hasattr(data, "shape") or not hasattr(data, "dtype"):
        data = np.asarray(data)
    _make_parent(p)
    meta = _Meta(
        list(band_names) if band_names else None, georef, nodata, band_axis, axes,
        tuple(gdal_items), label_classes,
    )  # fmt: skip
    # Written under a hidden name and renamed when complete: a failure (disk full...) leaves
    # neither a partial file nor a damaged earlier export.
    tmp = p.with_name(f".{p.stem}.{uuid.uuid4().hex[:8]}.partial{p.suffix}")
    try:
        if suffix in (".tif", ".tiff"):
            _write_tiff(p, data, meta, out=tmp)
        elif suffix == ".png":
            _write_png(p, _whole(data), band_axis, out=tmp)
        elif suffix == ".zarr":
            _write_zarr(p, data, meta, out=tmp)
        else:
            _write_npy(tmp, data)
        if suffix == ".zarr" and p.is_dir():
            shutil.rmtree(p)
        os.replace(tmp, p)
    except OSError as exc:
        raise ExportError(f"cannot write {p}: {_reason(exc)}") from exc
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
    return p


TILE_EDGE = 1024  # pixels a side of the blocks an export reads at a time


@dataclass(frozen=True)
class _Meta:
    """What :func:`write_raster` keeps beside the pixels (see its parameters)."""

    names: list[str] | None
    georef: GeoRef | None
    nodata: float | None
    band_axis: bool
    axes: str | None = None
    gdal_items: tuple[dict[str, Any], ...] = ()
    label_classes: Sequence[tuple[int, Sequence[float], str]] | None = None


def _out_dtype(data: Any) -> np.dtype:
    dtype = np.dtype(data.dtype)
    return np.dtype(np.uint8) if dtype.kind == "b" else dtype


def _block(data: Any, key: tuple[slice | int, ...]) -> np.ndarray:
    """One block of ``data`` as numpy (booleans as uint8)."""
    block = np.asarray(data[key])
    return block.astype(np.uint8) if block.dtype.kind == "b" else block


def _whole(data: Any) -> np.ndarray:
    return _block(data, (Ellipsis,))


def _write_npy(out: Path, data: Any) -> None:
    """Write ``.npy`` in file order, strip by strip (full rows, :data:`TILE_EDGE` at a time)."""
    shape = tuple(int(v) for v in data.shape)
    dtype = _out_dtype(data)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    with open(out, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        *lead, ny, _nx = shape
        for idx in np.ndindex(*lead):
            for y in range(0, ny, TILE_EDGE):
                f.write(
                    np.ascontiguousarray(_block(data, (*idx, slice(y, y + TILE_EDGE)))).tobytes()
                )


def _make_parent(p: Path) -> None:
    """Create the folder ``p`` goes into, or say (naming it) why that is not possible."""
    parent = p.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        blocker = next((q for q in [parent, *parent.parents] if q.is_file()), parent)
        raise ExportError(f"cannot write {p}: {blocker} is a file, not a folder") from exc
    except OSError as exc:
        raise ExportError(
            f"cannot write {p}: cannot create folder {parent}: {_reason(exc)}"
        ) from exc


def _reason(exc: OSError) -> str:
    """What the OS said, without its error number (``no space left on device``)."""
    return (exc.strerror or str(exc)).lower()


def _write_tiff(p: Path, data: Any, meta: _Meta, out: Path | None = None) -> None:
    """Write a (Geo)TIFF to ``out`` (default ``p``; messages name ``p``); tiles of 256² are
    read one at a time from a large (possibly lazy) ``data``."""
    names, georef, nodata, band_axis = meta.names, meta.georef, meta.nodata, meta.band_axis
    gdal_items = meta.gdal_items
    import tifffile

    extratags: list[tuple[Any, ...]] = list(georef.extratags()) if georef else []
    xml = gdal_metadata_xml(names, gdal_items)
    if xml:
        extratags.append((GDAL_METADATA, "s", 0, xml, True))
    if nodata is not None:
        extratags.append((GDAL_NODATA, "s", 0, _nodata_text(nodata), True))
    shape = tuple(int(v) for v in data.shape)
    dtype = _out_dtype(data)
    multiband = band_axis and len(shape) >= 3 and shape[0] > 1
    if band_axis and shape[0] == 1:
        data = _Squeezed(data)
        shape = shape[1:]
    kwargs: dict[str, Any] = {
        "photometric": "minisblack",
        "compression": "zlib",
        "bigtiff": int(np.prod(shape)) * dtype.itemsize > 2**31,
        "extratags": extratags,
        "metadata": None,
    }
    if multiband:
        if len(shape) != 3:
            raise ExportError(f"{p}: multiband stacks ({shape}) export to .zarr or .npy, not TIFF")
        kwargs["planarconfig"] = "separate"
    if shape[-1] >= 256 and shape[-2] >= 256:
        kwargs["tile"] = (256, 256)
        # tifffile takes the tiles in file order: plane (page or band) by plane, row by row.
        blocks = (_block(data, key) for key in tiles(shape, 256))
        tifffile.imwrite(out or p, blocks, shape=shape, dtype=dtype, **kwargs)
    else:
        tifffile.imwrite(out or p, _whole(data), **kwargs)


class _Squeezed:
    """``data[0]`` without reading it: a one-band array seen without its band axis."""

    def __init__(self, data: Any) -> None:
        self.data = data
        self.shape = tuple(data.shape[1:])
        self.dtype = data.dtype

    def __getitem__(self, key: Any) -> Any:
        key = key if isinstance(key, tuple) else (key,)
        return self.data[(0, *key)]


def _nodata_text(nodata: float) -> str:
    return str(int(nodata)) if float(nodata).is_integer() else repr(float(nodata))


def _write_png(p: Path, data: np.ndarray, band_axis: bool, out: Path | None = None) -> None:
    """Write a PNG to ``out`` (default ``p``; messages name ``p``)."""
    import imageio.v3 as iio

    if data.dtype.kind == "f":
        raise ExportError(
            f"{p}: PNG holds integers only and would round {data.dtype} values; use .tif"
        )
    if band_axis:
        if data.shape[0] == 1:
            data = data[0]
        elif data.ndim == 3 and data.shape[0] in (3, 4) and data.dtype == np.uint8:
            data = np.moveaxis(data, 0, -1)
        else:
            raise ExportError(
                f"{p}: PNG holds 1 band or 3/4 bands of uint8, not {data.shape}; use .tif"
            )
    if data.ndim not in (2, 3) or (data.ndim == 3 and data.shape[-1] not in (3, 4)):
        raise ExportError(f"{p}: PNG holds 2-D images, not shape {data.shape}; use .tif")
    if data.dtype.kind == "i":
        if data.size and data.min() < 0:
            raise ExportError(f"{p}: PNG cannot hold negative values; use .tif")
        data = data.astype(np.uint16 if data.max(initial=0) > 255 else np.uint8)
    if data.dtype.itemsize > 2 or (data.ndim == 3 and data.dtype != np.uint8):
        if data.max(initial=0) > np.iinfo(np.uint16).max:
            raise ExportError(f"{p}: values above 65535 do not fit a PNG; use .tif")
        data = data.astype(np.uint16)
    iio.imwrite(out or p, data)


def _write_zarr(p: Path, data: Any, meta: _Meta, out: Path | None = None) -> None:
    """Write an OME-Zarr 0.5 image (one level) to ``out`` (default ``p``), block by block.

    The napari-hitl metadata (band names, nodata, georeferencing) goes into the group's
    ``napari_hitl`` attributes; a time stack is written ``T, C, Y, X`` as NGFF requires.
    """
    names, georef, nodata, band_axis = meta.names, meta.georef, meta.nodata, meta.band_axis
    axes, label_classes = meta.axes, meta.label_classes
    import zarr

    from napari_hitl.core.store.ngff import (
        AxisView,
        dimension_names,
        disk_axes,
        image_attrs,
        image_label_attrs,
    )

    shape = tuple(int(v) for v in data.shape)
    if axes is None:
        axes = ("C" if band_axis else "") + "ZYX"[-(len(shape) - bool(band_axis)) :]
    axes = axes.upper()
    if len(axes) != len(shape):
        raise ExportError(f"{p}: axes {axes!r} do not match the data's shape {shape}")
    order = disk_axes(axes)
    stored = tuple(shape[axes.index(a)] for a in order)
    chunks = tuple(min(s, 512) if a in "YX" else 1 for a, s in zip(order, stored, strict=True))
    group = zarr.open_group(str(out or p), mode="w", zarr_format=3)
    arr = group.create_array(
        "0",
        shape=stored,
        dtype=_out_dtype(data),
        chunks=chunks,
        fill_value=0,
        dimension_names=dimension_names(order),
    )
    target: Any = arr if order == axes else AxisView(arr, order, axes)
    for key in tiles(shape, TILE_EDGE):
        target[key] = _block(data, key)
    n_bands = shape[0] if band_axis else 1
    channel_names = names if names and len(names) == n_bands else [None] * n_bands
    channels = [
        {"label": str(n) if n else f"band_{i}", "color": "FFFFFF", "active": True}
        for i, n in enumerate(channel_names)
    ]
    ome = image_attrs(p.stem, axes, 0, channels if "C" in axes else [])
    if label_classes is not None:
        ome["image-label"] = image_label_attrs(label_classes)
        del ome["image-label"]["source"]  # a label map on its own, not inside an image
    group.attrs.update(
        {
            "ome": ome,
            ATTR: {
                "band_names": names,
                "band_axis": band_axis,
                "nodata": nodata,
                "georef": georef.to_json() if georef else None,
            },
        }
    )


def export_item(
    store: ProjectStore,
    image: str,
    what: str,
    out: str | os.PathLike[str],
    overwrite: bool = True,
) -> Path:
    """Export one array of an image in the store.

    Parameters
    ----------
    store
        An open project store.
    image
        Image name.
    what
        ``"labels"``, ``"provenance"``, ``"image"`` or the name of a derived array
        (``"prediction"``, ``"confidence"``, ...).
    out
        Output path; its suffix picks the format (see :func:`write_raster`).
    overwrite
        Replace an existing file.

    Returns
    -------
    Path
        The written file.
    """
    info = store.image_info(image)
    if what == "image":
        return write_raster(
            out,
            store.image(image),  # read block by block: bounded memory on large images
            band_names=info.band_names,
            georef=info.georef,
            nodata=info.nodata,
            overwrite=overwrite,
            axes=info.axes,
            gdal_items=info.georef.metadata if info.georef else (),
        )
    if what == "labels":
        data = store.labels(image)
    elif what == "provenance":
        data = store.provenance(image)
    else:
        data = store.read_derived(image, what)
    band_axis = data.ndim > len(info.spatial_shape)
    return write_raster(
        out,
        data,
        band_names=[what] if not band_axis else None,
        georef=info.georef,
        band_axis=band_axis,
        overwrite=overwrite,
        axes=("C" if band_axis else "") + info.axes[1:],
        gdal_items=info.georef.dataset_metadata() if info.georef else (),
        label_classes=(
            [(c.value, c.rgba, c.name) for c in store.classes] if what == "labels" else None
        ),
    )


# --------------------------------------------------------------------------- report
def write_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write dict rows (the union of their keys as columns, first-seen order) to a CSV file."""
    path = Path(path)
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in keys})
    return path
