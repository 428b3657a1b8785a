"""Read source rasters (TIFF/GeoTIFF, PNG/JPEG, .npy) into a band-first :class:`Raster`.

A :class:`Raster` holds lazily read data (numpy memmap or dask) with axes ``C`` first, then an
optional ``Z`` or ``T`` stack axis, then ``Y`` and ``X``. Every failure raises
:class:`~napari_hitl.core.errors.InputFileError` naming the file and what is wrong with it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import dask.array as da
import numpy as np

from napari_hitl.core.errors import InputFileError
from napari_hitl.core.io.geo import (
    GDAL_METADATA,
    GDAL_NODATA,
    GeoRef,
    band_names_from_gdal_metadata,
    georef_from_tags,
)
from napari_hitl.core.io.tiff_names import tiff_band_names

Layout = Literal["auto", "band-first", "band-last"]
TIFF_SUFFIXES = {".tif", ".tiff"}
PNG_JPEG_SUFFIXES = {".png", ".jpg", ".jpeg"}
NPY_SUFFIXES = {".npy"}
RASTER_SUFFIXES = TIFF_SUFFIXES | PNG_JPEG_SUFFIXES | NPY_SUFFIXES | {".zarr"}
_ZARR_FILES = ("zarr.json", ".zarray", ".zgroup")  # a folder holding one is a zarr node
_MAX_BANDS_GUESS = 64  # an axis this short or shorter may be bands when nothing says so


@dataclass
class Raster:
    """A band-first raster read from one or more files.

    Attributes
    ----------
    data
        Array with axes ``axes`` (``"CYX"``, ``"CZYX"`` or ``"CTYX"``); numpy or dask.
    axes
        Axis letters, always starting with ``C`` and ending with ``YX``.
    band_names
        One name per band.
    nodata
        Value marking missing pixels in the source, if the source declared one.
    georef
        Georeferencing read from GeoTIFF tags, if any.
    sources
        The files the bands came from, one entry per band.
    roles
        ``"spectral"``, ``"dsm"`` or ``"other"`` per band.
    """

    data: Any
    axes: str
    band_names: list[str]
    nodata: float | None = None
    georef: GeoRef | None = None
    sources: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.roles:
            self.roles = ["spectral"] * self.n_bands
        if not self.sources:
            self.sources = [""] * self.n_bands

    @property
    def n_bands(self) -> int:
        """Number of bands (length of the ``C`` axis)."""
        return int(self.data.shape[0])

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Shape without the band axis."""
        return tuple(int(s) for s in self.data.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        """The data type of the pixels."""
        return np.dtype(self.data.dtype)


def _check_dtype(path: str, dtype: np.dtype) -> None:
    if dtype.kind in "uif" and dtype.itemsize <= 8:
        return
    if dtype.kind == "b":
        return
    raise InputFileError(
        path,
        f"pixel type {dtype} is not supported; use unsigned/signed integers or floats "
        "(convert complex data to amplitude first)",
    )


def _normalise_axes(path: str, arr: Any, axes: str) -> tuple[Any, str]:
    """Transpose to C, [Z|T], Y, X; add a length-1 C axis where there is none."""
    axes = axes.upper()
    if len(axes) != arr.ndim or len(set(axes)) != len(axes):
        raise InputFileError(path, f"axes {axes!r} do not match the data's {arr.ndim} dimensions")
    allowed = set("CZTYX")
    if not set(axes) <= allowed or "Y" not in axes or "X" not in axes:
        raise InputFileError(path, f"axes {axes!r} must use C, Z, T, Y, X and include Y and X")
    if "Z" in axes and "T" in axes:
        raise InputFileError(path, "a Z and a T axis together are not supported; split one first")
    if "C" not in axes:
        arr = arr[None]
        axes = "C" + axes
    order = [axes.index(a) for a in "CZTYX" if a in axes]
    arr = arr.transpose(order)
    return arr, "".join(a for a in "CZTYX" if a in axes)


def guess_axes(path: str, shape: tuple[int, ...], layout: Layout = "auto") -> str:
    """Axis letters for an array whose file says nothing about its axes.

    2-D is ``YX``; 3-D is band-first or band-last by ``layout`` or, for ``"auto"``, by which end
    is short enough to be bands. 4-D and higher must be given explicitly.
    """
    if len(shape) == 2:
        return "YX"
    if len(shape) == 3:
        if layout == "band-first":
            return "CYX"
        if layout == "band-last":
            return "YXC"
        first, last = shape[0], shape[-1]
        if first <= _MAX_BANDS_GUESS and (first < last or last > _MAX_BANDS_GUESS):
            return "CYX"
        if last <= _MAX_BANDS_GUESS:
            return "YXC"
        raise InputFileError(
            path,
            f"cannot tell which axis holds the bands in shape {shape}; pass --layout "
            "band-first or band-last (or --axes)",
        )
    raise InputFileError(
        path, f"{len(shape)}-D data {shape}: say what each axis is with --axes (e.g. TYXC or CZYX)"
    )


def _tiff_axes_to_ours(axes: str) -> str:
    """Map tifffile's axis codes to C/Z/T/Y/X (samples, pages and channels all become C)."""
    mapping = {"S": "C", "C": "C", "I": "C", "Q": "C", "Z": "Z", "T": "T", "Y": "Y", "X": "X"}
    out = "".join(mapping.get(a, "?") for a in axes)
    if out.count("C") > 1 or "?" in out:
        return ""
    return out


def read_tiff(path: str, layout: Layout = "auto", axes: str | None = None) -> Raster:
    """Read a (Geo)TIFF lazily: band-first, band-last or multi-page; keeps georef and names."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series or not tif.pages:
                raise InputFileError(path, "the TIFF holds no image")
            series = tif.series[0]
            page = tif.pages[0]
            tags = {tag.code: tag.value for tag in page.tags}
            tif_axes = series.axes
            shape = tuple(series.shape)
            dtype = np.dtype(series.dtype)
            file_names = tiff_band_names(tif, tif_axes)
    except InputFileError:
        raise
    except Exception as exc:  # tifffile raises many types for damaged files
        raise InputFileError(path, f"not a readable TIFF ({type(exc).__name__}: {exc})") from exc
    if int(np.prod(shape)) == 0:
        raise InputFileError(path, f"the image is empty (shape {shape})")
    _check_dtype(path, dtype)
    try:
        store = tifffile.imread(path, aszarr=True, series=0, level=0)
        import zarr

        arr: Any = da.from_zarr(zarr.open_array(store, mode="r"))
    except Exception as exc:
        raise InputFileError(path, f"cannot read the pixel data ({exc})") from exc
    if axes is None:
        ours = _tiff_axes_to_ours(tif_axes) if layout == "auto" else ""
        axes = ours or guess_axes(path, shape, layout)
    arr, axes = _normalise_axes(path, arr, axes)
    nodata = None
    if GDAL_NODATA in tags:
        try:
            nodata = float(str(tags[GDAL_NODATA]).strip().strip("\x00"))
        except ValueError:
            nodata = None
    names: list[str | None] = [None] * arr.shape[0]
    if GDAL_METADATA in tags:
        names = band_names_from_gdal_metadata(str(tags[GDAL_METADATA]), arr.shape[0])
    if not any(names) and len(file_names) == arr.shape[0]:  # OME, ImageJ or tifffile names
        names = file_names
    return Raster(
        data=arr,
        axes=axes,
        band_names=_fill_names(names, Path(path).stem),
        nodata=nodata,
        georef=georef_from_tags(tags),
        sources=[path] * arr.shape[0],
    )


def _fill_names(names: Sequence[str | None], stem: str) -> list[str]:
    if len(names) == 1 and not names[0]:
        return [stem]
    return [n if n else f"band_{i}" for i, n in enumerate(names)]


def read_png_jpeg(path: str) -> Raster:
    """Read a PNG or JPEG: gray becomes one band, RGB(A) three (four) bands named R, G, B(, A)."""
    import imageio.v3 as iio

    try:
        arr = np.asarray(iio.imread(path))
    except Exception as exc:
        raise InputFileError(
            path, f"not a readable PNG/JPEG ({type(exc).__name__}: {exc})"
        ) from exc
    if arr.size == 0:
        raise InputFileError(path, "the image is empty")
    _check_dtype(path, arr.dtype)
    if arr.ndim == 2:
        return Raster(arr[None], "CYX", [Path(path).stem], sources=[path])
    if arr.ndim == 3 and arr.shape[-1] in (2, 3, 4):
        names = {2: ["L", "A"], 3: ["R", "G", "B"], 4: ["R", "G", "B", "A"]}[arr.shape[-1]]
        return Raster(np.moveaxis(arr, -1, 0), "CYX", names, sources=[path] * arr.shape[-1])
    raise InputFileError(path, f"unexpected PNG/JPEG shape {arr.shape}")


def read_npy(path: str, layout: Layout = "auto", axes: str | None = None) -> Raster:
    """Read a ``.npy`` array (memory-mapped, so large files stay on disk)."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:
        raise InputFileError(
            path, f"not a readable .npy file ({type(exc).__name__}: {exc})"
        ) from exc
    if arr.size == 0:
        raise InputFileError(path, f"the array is empty (shape {arr.shape})")
    _check_dtype(path, arr.dtype)
    arr, axes = _normalise_axes(path, arr, axes or guess_axes(path, arr.shape, layout))
    names = _fill_names([None] * arr.shape[0], Path(path).stem)
    return Raster(arr, axes, names, sources=[path] * arr.shape[0])


def read_zarr_array(path: str, layout: Layout = "auto", axes: str | None = None) -> Raster:
    """Read a zarr array (e.g. one written by :func:`napari_hitl.core.io.export.write_raster`)."""
    import zarr

    try:
        node = zarr.open(path, mode="r")
    except Exception as exc:
        raise InputFileError(
            path, f"not a readable zarr array ({type(exc).__name__}: {exc})"
        ) from exc
    if not hasattr(node, "shape"):
        from napari_hitl.core.io.ome_zarr import is_ome_zarr, read_ome_zarr

        ours = dict(node.attrs).get("napari_hitl")
        if isinstance(ours, dict) and "schema_version" in ours:
            raise InputFileError(
                path,
                "is a napari-hitl project store; import one of its images by path "
                f"({Path(path) / 'images' / 'NAME'}) or open it with `napari-hitl info`",
            )
        if not is_ome_zarr(node):
            raise InputFileError(
                path, "is a zarr group without OME-Zarr image metadata, not an image"
            )
        data, stored, names = read_ome_zarr(path, node)
        if axes is not None:
            raise InputFileError(path, "--axes does not apply: OME-Zarr metadata names the axes")
        data, axes = _normalise_axes(path, data, stored)
        _check_dtype(path, np.dtype(data.dtype))
        ours = ours if isinstance(ours, dict) else {}  # written by export: keep its metadata
        if ours.get("band_names") and len(ours["band_names"]) == len(names):
            names = ours["band_names"]
        return _zarr_raster(path, data, axes, names, ours)
    if int(np.prod(node.shape)) == 0:
        raise InputFileError(path, f"the array is empty (shape {node.shape})")
    _check_dtype(path, np.dtype(node.dtype))
    meta = dict(node.attrs).get("napari_hitl", {})
    arr: Any = da.from_zarr(node)
    if axes is None and meta.get("band_axis") is not None:
        axes = ("C" if meta["band_axis"] else "") + "ZYX"[-(arr.ndim - bool(meta["band_axis"])) :]
    arr, axes = _normalise_axes(path, arr, axes or guess_axes(path, arr.shape, layout))
    return _zarr_raster(path, arr, axes, meta.get("band_names") or [None] * arr.shape[0], meta)


def _zarr_raster(
    path: str | os.PathLike[str], data: Any, axes: str, names: list, ours: dict[str, Any]
) -> Raster:
    """A zarr array or OME-Zarr image as a Raster, with the metadata a napari-hitl export
    wrote (``ours``: nodata, georeferencing)."""
    return Raster(
        data,
        axes,
        _fill_names(names, Path(path).stem),
        nodata=ours.get("nodata"),
        georef=GeoRef.from_json(ours.get("georef")),
        sources=[path] * len(names),
    )


def read_raster(
    path: str | os.PathLike[str], layout: Layout = "auto", axes: str | None = None
) -> Raster:
    """Read any supported raster file into a band-first :class:`Raster`.

    Parameters
    ----------
    path
        A ``.tif/.tiff``, ``.png``, ``.jpg/.jpeg`` or ``.npy`` file.
    layout
        Where the bands are in a 3-D array without axis metadata (``"auto"`` guesses).
    axes
        Explicit axis letters of the stored array (e.g. ``"TYXC"``); overrides ``layout``.

    Raises
    ------
    InputFileError
        The file is missing, unreadable, empty, of an unsupported type or pixel type.
    """
    p = str(path)
    if not os.path.exists(p):
        raise InputFileError(p, "no such file")
    suffix = Path(p).suffix.lower()
    if os.path.isdir(p) and (
        suffix == ".zarr" or any(os.path.exists(os.path.join(p, f)) for f in _ZARR_FILES)
    ):
        return read_zarr_array(p, layout, axes)
    if os.path.isdir(p):
        raise InputFileError(
            p, "is a folder; pass image files (or use the napari reader on folders)"
        )
    if os.path.getsize(p) == 0:
        raise InputFileError(p, "the file is empty (0 bytes)")
    if suffix in TIFF_SUFFIXES:
        return read_tiff(p, layout, axes)
    if suffix in PNG_JPEG_SUFFIXES:
        raster = read_png_jpeg(p)
        if axes:
            raise InputFileError(p, "--axes applies to TIFF and .npy files only")
        return raster
    if suffix in NPY_SUFFIXES:
        return read_npy(p, layout, axes)
    raise InputFileError(
        p, f"unsupported file type {suffix!r}; use one of {', '.join(sorted(RASTER_SUFFIXES))}"
    )


def stack_rasters(rasters: Sequence[Raster]) -> Raster:
    """Concatenate rasters along the band axis (e.g. Landsat red, green, blue, NIR files).

    The first raster's georeferencing is kept; all must share the spatial shape and stack axes.
    """
    if not rasters:
        raise ValueError("no rasters to stack")
    first = rasters[0]
    for r in rasters[1:]:
        if r.spatial_shape != first.spatial_shape or r.axes != first.axes:
            raise InputFileError(
                r.sources[0] if r.sources else "?",
                f"shape {r.spatial_shape} ({r.axes}) differs from {first.sources[0]}'s "
                f"{first.spatial_shape} ({first.axes}); all bands must cover the same pixels",
            )
    dtype = np.result_type(*[r.dtype for r in rasters])
    names = [n for r in rasters for n in r.band_names]
    if all(r.n_bands == 1 for r in rasters) and len(rasters) > 1:
        names = _strip_common_affixes(names)
    data = da.concatenate([da.asarray(r.data).astype(dtype) for r in rasters], axis=0)
    nodatas = {r.nodata for r in rasters if r.nodata is not None}
    georef = next((r.georef for r in rasters if r.georef is not None), None)
    if georef is not None and any(r.georef is not None and r.georef.metadata for r in rasters):
        georef = georef.with_band_metadata(  # each file's band items, on its bands
            [
                r.georef.items_of_band(i) if r.georef is not None else []
                for r in rasters
                for i in range(r.n_bands)
            ]
        )
    return Raster(
        data=data,
        axes=first.axes,
        band_names=names,
        nodata=nodatas.pop() if len(nodatas) == 1 else None,
        georef=georef,
        sources=[s for r in rasters for s in r.sources],
        roles=[x for r in rasters for x in r.roles],
    )


def _common_start(texts: list[str]) -> str:
    first = min(texts, key=len)
    for i, ch in enumerate(first):
        if any(t[i] != ch for t in texts):
            return first[:i]
    return first


def _strip_common_affixes(names: list[str]) -> list[str]:
    """``red_patch_X.TIF, green_patch_X.TIF`` → ``red, green``: drop the shared prefix/suffix
    (cut at a ``_``/``-``/``.`` boundary) when the names stay unique and non-empty."""
    prefix = _common_start(names)
    suffix = _common_start([n[::-1] for n in names])[::-1]
    cut_p = max((prefix.rfind(c) + 1 for c in "_-."), default=0) if prefix else 0
    cut_s = min((i for i in (suffix.find(c) for c in "_-.") if i >= 0), default=len(suffix))
    stripped = [n[cut_p : len(n) - (len(suffix) - cut_s)] for n in names]
    if all(stripped) and len(set(stripped)) == len(stripped):
        return stripped
    return names


def select_bands(raster: Raster, bands: Sequence[int | str]) -> Raster:
    """Keep and reorder bands, chosen by index (0-based) or by name.

    Raises
    ------
    InputFileError
        A band index is negative or out of range, or a name is unknown (the message lists the
        names).
    """
    idx: list[int] = []
    src = raster.sources[0] if raster.sources else "input"
    for b in bands:
        if isinstance(b, str) and not b.lstrip("-").isdigit():
            if b not in raster.band_names:
                raise InputFileError(src, f"no band named {b!r}; bands are {raster.band_names}")
            idx.append(raster.band_names.index(b))
        else:
            i = int(b)
            if i < 0:
                raise InputFileError(
                    src,
                    f"band index {i} is negative; bands count from 0 (0..{raster.n_bands - 1}), "
                    "or give band names",
                )
            if i >= raster.n_bands:
                raise InputFileError(src, f"band index {i} out of range (0..{raster.n_bands - 1})")
            idx.append(i)
    if not idx:
        raise InputFileError(src, "no bands selected")
    georef = raster.georef
    if georef is not None and georef.metadata:  # per-band GDAL items follow their bands
        georef = georef.with_band_metadata([georef.items_of_band(i) for i in idx])
    return replace(
        raster,
        data=raster.data[idx],
        georef=georef,
        band_names=[raster.band_names[i] for i in idx],
        sources=[raster.sources[i] for i in idx],
        roles=[raster.roles[i] for i in idx],
    )


def add_height_band(raster: Raster, height: Raster, name: str = "DSM") -> Raster:
    """Append a one-band height raster (DSM/DEM) as a band with role ``"dsm"``.

    It keeps its own data type and gets its own normalization statistics at import.
    """
    if height.n_bands != 1:
        raise InputFileError(
            height.sources[0], f"a height raster must have one band, this one has {height.n_bands}"
        )
    height = replace(height, band_names=[name], roles=["dsm"])
    return stack_rasters([raster, height])


def split_axis(raster: Raster, axis: str, base_name: str) -> list[tuple[str, Raster]]:
    """Split a Z or T stack into one 2-D raster per index, named ``{base}_{axis}{i}``."""
    axis = axis.upper()
    if axis not in raster.axes or axis in "CYX":
        raise InputFileError(
            raster.sources[0] if raster.sources else "input",
            f"cannot split along {axis!r}: the data's axes are {raster.axes}",
        )
    pos = raster.axes.index(axis)
    out = []
    width = len(str(raster.data.shape[pos] - 1))
    for i in range(raster.data.shape[pos]):
        sl = [slice(None)] * raster.data.ndim
        sl[pos] = i
        out.append(
            (
                f"{base_name}_{axis.lower()}{i:0{width}d}",
                replace(raster, data=raster.data[tuple(sl)], axes=raster.axes.replace(axis, "")),
            )
        )
    return out


def read_mask(path: str | os.PathLike[str], shape: Sequence[int] | None = None) -> np.ndarray:
    """Read a single-channel integer label/mask image (TIFF, PNG, .npy, zarr) into memory.

    Parameters
    ----------
    path
        The mask file.
    shape
        The spatial shape of the image the mask is for. When it is a stack (``Z, Y, X`` or
        ``T, Y, X``), a 3-D mask of exactly that shape is read as one label plane per slice
        (multi-page TIFF, ``.npy`` or zarr) instead of as a mask with several channels.

    Returns
    -------
    numpy.ndarray
        The mask: ``Y, X``, or ``Z|T, Y, X`` for a stack.

    Raises
    ------
    InputFileError
        The file has several channels (and is not a stack mask of ``shape``), float values
        that are not integers, or is unreadable.
    """
    p = str(path)
    data: Any = None
    if shape is not None and len(shape) == 3 and Path(p).suffix.lower() not in PNG_JPEG_SUFFIXES:
        try:
            stack = read_raster(path, axes="ZYX")  # as stored: one plane per slice
        except InputFileError:
            stack = None  # not 3-D: read it as a plain mask below, and say what is wrong then
        if stack is not None and stack.spatial_shape == tuple(int(v) for v in shape):
            data = np.asarray(stack.data[0])
    if data is None:
        raster = read_raster(path)
        if raster.n_bands != 1:
            # RGB masks whose channels are identical (common for PNG masks) are one channel.
            data = np.asarray(raster.data)
            if (
                raster.n_bands in (3, 4)
                and np.array_equal(data[0], data[1])
                and np.array_equal(data[0], data[2])
            ):
                return _integer_mask(p, data[0])
            stack_hint = (
                f"; a mask for a stack must have the image's shape {tuple(shape)}"
                if shape is not None and len(shape) == 3
                else ""
            )
            raise InputFileError(
                p,
                f"a label mask must have one channel, this has {raster.n_bands} "
                f"(shape {tuple(raster.data.shape)}){stack_hint}",
            )
        data = np.asarray(raster.data[0])
    return _integer_mask(p, data)


def _integer_mask(path: str, data: np.ndarray) -> np.ndarray:
    """``data`` as integers: floats must hold whole numbers, booleans become 0/1."""
    if data.dtype.kind == "f":
        if not np.all(np.isfinite(data)) or not np.array_equal(data, np.round(data)):
            raise InputFileError(
                path, "label masks must hold integers; this one has fractions or NaN"
            )
        data = data.astype(np.int64)
    return data
