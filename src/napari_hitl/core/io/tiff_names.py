"""Band names a TIFF carries outside GDAL's metadata tag: OME-XML channel names (OME-TIFF,
microscopy), ImageJ slice labels and tifffile's own JSON description.

GDAL's band descriptions are read with the georeference (:mod:`napari_hitl.core.io.geo`); these
readers fill the names where GDAL's tag says nothing, so a microscope's ``DAPI``/``GFP`` or a
script's ``B04``/``B08`` reach the store (and the spectral indices that need band names)
instead of ``band_0``, ``band_1``….
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

# tifffile's JSON description (``imwrite(..., metadata={...})``): keys scripts use for names
_JSON_NAME_KEYS = ("band_names", "channel_names", "Channel", "channels", "labels")


def _local(tag: str) -> str:
    """An XML tag without its ``{namespace}``."""
    return tag.rsplit("}", 1)[-1]


def _clean(values: Any) -> list[str | None] | None:
    """``values`` as names (blank ones ``None``) if it is a list of strings, else ``None``."""
    if isinstance(values, (list, tuple)) and all(isinstance(v, str) for v in values):
        return [v.strip() or None for v in values]
    return None


def ome_channel_names(xml: str) -> list[str | None]:
    """Channel names of the first image in OME-XML (``None`` for a channel without one)."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return []
    pixels = next((el for el in root.iter() if _local(el.tag) == "Pixels"), None)
    if pixels is None:
        return []
    return _clean([ch.get("Name") or "" for ch in pixels if _local(ch.tag) == "Channel"]) or []


def _json_names(meta: dict[str, Any]) -> list[str | None]:
    for key in _JSON_NAME_KEYS:
        value = meta.get(key)
        if isinstance(value, dict):  # tifffile's OME-style {"Channel": {"Name": [...]}}
            value = value.get("Name")
        names = _clean(value)
        if names is not None:
            return names
    return []


def tiff_band_names(tif: Any, axes: str) -> list[str | None]:
    """Band names from an open :class:`tifffile.TiffFile` whose first series has tifffile's
    ``axes``, in the order of its channel axis; ``[]`` when the file names no bands.

    Tried in turn: OME-XML channel names, ImageJ slice labels (only without Z or T axes, where
    a label is a channel's) and tifffile's JSON description (``band_names``,
    ``channel_names``, ``Channel.Name``, ``channels`` or ``labels``). The caller keeps them
    only when their number matches the bands it reads.
    """
    names: list[str | None] = []
    if getattr(tif, "is_ome", False) and tif.ome_metadata:
        names = ome_channel_names(tif.ome_metadata)
    if not any(names) and getattr(tif, "is_imagej", False) and not set(axes) & set("ZT"):
        names = _clean((tif.imagej_metadata or {}).get("Labels")) or []
    if not any(names):
        try:
            shaped = tif.shaped_metadata
        except Exception:  # a damaged description is no reason to refuse the pixels
            shaped = None
        if shaped and isinstance(shaped[0], dict):
            names = _json_names(shaped[0])
    return names if any(names) else []
