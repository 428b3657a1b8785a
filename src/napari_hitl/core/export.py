"""Write rasters out of the store: TIFF/GeoTIFF, PNG, zarr and .npy, exactly.

:func:`write_raster` writes one array with its band names and georeferencing;
:func:`export_item` picks the array from a store (``labels``, ``provenance``, ``image`` or any
derived array such as ``prediction`` or ``confidence``) and writes it.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_hitl.core.errors import HitlError
from napari_hitl.core.geo import GDAL_METADATA, GDAL_NODATA, GeoRef, gdal_metadata_xml
from napari_hitl.core.store import ATTR, ProjectStore

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
) -> Path:
    """Write an array to ``path``; the suffix picks the format.

    Parameters
    ----------
    path
        ``.tif``/``.tiff`` (GeoTIFF when ``georef`` is given), ``.png`` (integers only, 1/3/4
        bands of uint8 or one band of uint16), ``.zarr`` (a zarr v3 array with the metadata in
        its attributes) or ``.npy``.
    data
        ``C, [Z|T,] Y, X`` when ``band_axis`` else ``[Z|T,] Y, X``.
    band_names, georef, nodata
        Metadata to keep (TIFF: GDAL band descriptions, GeoTIFF tags and GDAL_NODATA).
    band_axis
        Whether the first axis holds bands.
    overwrite
        Replace an existing file.

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
    data = np.asarray(data)
    if data.dtype == bool:
        data = data.astype(np.uint8)
    _make_parent(p)
    names = list(band_names) if band_names else None
    # Written under a hidden name and renamed when complete: a failure (disk full...) leaves
    # neither a partial file nor a damaged earlier export.
    tmp = p.with_name(f".{p.stem}.{uuid.uuid4().hex[:8]}.partial{p.suffix}")
    try:
        if suffix in (".tif", ".tiff"):
            _write_tiff(p, data, names, georef, nodata, band_axis, out=tmp)
        elif suffix == ".png":
            _write_png(p, data, band_axis, out=tmp)
        elif suffix == ".zarr":
            _write_zarr(p, data, names, georef, nodata, band_axis, out=tmp)
        else:
            np.save(tmp, data, allow_pickle=False)
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


def _write_tiff(
    p: Path,
    data: np.ndarray,
    names: list[str] | None,
    georef: GeoRef | None,
    nodata: float | None,
    band_axis: bool,
    out: Path | None = None,
) -> None:
    """Write a (Geo)TIFF to ``out`` (default ``p``; messages name ``p``)."""
    import tifffile

    extratags: list[tuple[Any, ...]] = list(georef.extratags()) if georef else []
    xml = gdal_metadata_xml(names)
    if xml:
        extratags.append((GDAL_METADATA, "s", 0, xml, True))
    if nodata is not None:
        extratags.append((GDAL_NODATA, "s", 0, _nodata_text(nodata), True))
    multiband = band_axis and data.ndim >= 3 and data.shape[0] > 1
    if band_axis and data.shape[0] == 1:
        data = data[0]
    kwargs: dict[str, Any] = {
        "photometric": "minisblack",
        "compression": "zlib",
        "bigtiff": data.nbytes > 2**31,
        "extratags": extratags,
        "metadata": None,
    }
    if data.shape[-1] >= 256 and data.shape[-2] >= 256:
        kwargs["tile"] = (256, 256)
    if multiband:
        if data.ndim != 3:
            raise ExportError(
                f"{p}: multiband stacks ({data.shape}) export to .zarr or .npy, not TIFF"
            )
        kwargs["planarconfig"] = "separate"
    tifffile.imwrite(out or p, data, **kwargs)


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


def _write_zarr(
    p: Path,
    data: np.ndarray,
    names: list[str] | None,
    georef: GeoRef | None,
    nodata: float | None,
    band_axis: bool,
    out: Path | None = None,
) -> None:
    """Write a zarr v3 array to ``out`` (default ``p``)."""
    import zarr

    chunks = tuple(min(s, 512) if i >= data.ndim - 2 else 1 for i, s in enumerate(data.shape))
    arr = zarr.create_array(
        str(out or p),
        shape=data.shape,
        dtype=data.dtype,
        chunks=chunks,
        fill_value=0,
        overwrite=True,
        attributes={
            ATTR: {
                "band_names": names,
                "band_axis": band_axis,
                "nodata": nodata,
                "georef": georef.to_json() if georef else None,
            }
        },
    )
    arr[...] = data


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
            np.asarray(store.image(image)[...]),
            band_names=info.band_names,
            georef=info.georef,
            nodata=info.nodata,
            overwrite=overwrite,
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
    )
