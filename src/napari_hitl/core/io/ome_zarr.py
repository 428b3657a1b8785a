"""Read OME-Zarr images (NGFF 0.4 and 0.5) written by other tools into a :class:`Raster`.

An image group (``multiscales``) is read at full resolution, lazily: its axes come from the
metadata (singleton ``t``/``z``/``c`` axes are dropped, the order becomes napari-hitl's channel
first ``C, [Z|T,] Y, X``), band names from ``omero.channels``. A label image (an NGFF
``image-label`` group) is read the same way, as one band, for ``--labels``. A bioformats2raw
root with one image is read as that image; with several, the message lists their paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari_hitl.core.errors import InputFileError

_LETTERS = {"c": "C", "channel": "C", "z": "Z", "t": "T", "y": "Y", "x": "X"}


def ome_attributes(group: Any) -> dict[str, Any]:
    """The OME metadata of a zarr group: ``attributes.ome`` (0.5) or the attributes (0.4)."""
    attrs = dict(group.attrs)
    ome = attrs.get("ome")
    return dict(ome) if isinstance(ome, dict) else attrs


def is_ome_zarr(group: Any) -> bool:
    """Whether a zarr group is an OME-Zarr image or a bioformats2raw collection."""
    ome = ome_attributes(group)
    return "multiscales" in ome or "bioformats2raw.layout" in ome


def _series(path: str, group: Any, ome: dict[str, Any]) -> list[str]:
    """Image paths of a bioformats2raw root: ``OME/series`` or the numbered groups."""
    paths: list[str] = []
    if "OME" in group:
        series = ome_attributes(group["OME"]).get("series")
        if isinstance(series, list):
            paths = [str(s) for s in series]
    if not paths:
        while str(len(paths)) in group:
            paths.append(str(len(paths)))
    return paths


def read_ome_zarr(path: str, group: Any) -> tuple[Any, str, list[str | None]]:
    """The full-resolution image of an OME-Zarr group.

    Parameters
    ----------
    path
        Where the group is (for messages).
    group
        The open zarr group.

    Returns
    -------
    tuple
        ``(dask array, axis letters as stored after dropping singleton axes, band names or
        None per band)``; the caller orders the axes channel first.

    Raises
    ------
    InputFileError
        Not an image, several images, axes napari-hitl cannot hold (both Z and T, or an
        unknown axis), or unreadable data.
    """
    import dask.array as da

    ome = ome_attributes(group)
    if "multiscales" not in ome and "bioformats2raw.layout" in ome:
        series = _series(path, group, ome)
        if len(series) != 1:
            listed = ", ".join(str(Path(path) / s) for s in series[:6]) or "none found"
            raise InputFileError(
                path,
                f"is an OME-Zarr collection of {len(series)} images; import them by path: {listed}",
            )
        group = group[series[0]]
        ome = ome_attributes(group)
        path = str(Path(path) / series[0])
    multiscales = ome.get("multiscales")
    if not isinstance(multiscales, list) or not multiscales:
        raise InputFileError(path, "is a zarr group without OME-Zarr multiscales metadata")
    first = multiscales[0]
    try:
        dataset = str(first["datasets"][0]["path"])
        axes_meta = first.get("axes") or [{"name": n} for n in "tczyx"[-group[dataset].ndim :]]
        names = [str(a["name"] if isinstance(a, dict) else a).lower() for a in axes_meta]
        arr = group[dataset]
    except (KeyError, IndexError, TypeError) as exc:
        raise InputFileError(path, f"malformed OME-Zarr multiscales metadata ({exc})") from exc
    if len(names) != arr.ndim:
        raise InputFileError(
            path, f"the metadata names {len(names)} axes, the array has {arr.ndim} dimensions"
        )
    unknown = [n for n in names if n not in _LETTERS]
    if unknown:
        raise InputFileError(path, f"axis {unknown[0]!r} is not one of t, c, z, y, x")
    data: Any = da.from_zarr(arr)
    keep = [i for i, n in enumerate(names) if arr.shape[i] > 1 or n in ("y", "x")]
    drop = tuple(0 if i not in keep else slice(None) for i in range(arr.ndim))
    data = data[drop]
    letters = "".join(_LETTERS[names[i]] for i in keep)
    if "Z" in letters and "T" in letters:
        raise InputFileError(
            path, "has both a Z and a T axis longer than 1; napari-hitl holds one stack axis"
        )
    band_names: list[str | None] = []
    channels = ome.get("omero", {}).get("channels") if isinstance(ome.get("omero"), dict) else None
    n_bands = data.shape[letters.index("C")] if "C" in letters else 1
    if isinstance(channels, list) and len(channels) == n_bands:
        band_names = [
            str(c.get("label")) if isinstance(c, dict) and c.get("label") else None
            for c in channels
        ]
    else:
        band_names = [None] * n_bands
    if "image-label" in ome and "C" not in letters:
        band_names = ["labels"]
    return data, letters, band_names
