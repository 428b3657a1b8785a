"""Georeferencing: read GeoTIFF tags into a JSON-friendly :class:`GeoRef` and write them back.

We keep the raw GeoTIFF tags (GeoKey directory, tie points, pixel scale, transformation) verbatim so
that an export reproduces the source's georeferencing exactly, and derive from them the two things
users ask for: a CRS string (``"EPSG:32633"``) and the affine pixel→world transform in rasterio's
order ``(a, b, c, d, e, f)``: ``x = a*col + b*row + c``, ``y = d*col + e*row + f`` (pixel corners).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# GeoTIFF tag codes and their TIFF data types for tifffile's ``extratags``.
MODEL_PIXEL_SCALE = 33550
MODEL_TIEPOINT = 33922
MODEL_TRANSFORMATION = 34264
GEO_KEY_DIRECTORY = 34735
GEO_DOUBLE_PARAMS = 34736
GEO_ASCII_PARAMS = 34737
GDAL_METADATA = 42112
GDAL_NODATA = 42113

GEO_TAG_TYPES: dict[int, str] = {
    MODEL_PIXEL_SCALE: "d",
    MODEL_TIEPOINT: "d",
    MODEL_TRANSFORMATION: "d",
    GEO_KEY_DIRECTORY: "H",
    GEO_DOUBLE_PARAMS: "d",
    GEO_ASCII_PARAMS: "s",
}

_GEOGRAPHIC_TYPE_KEY = 2048
_PROJECTED_CS_TYPE_KEY = 3072
_USER_DEFINED = 32767


@dataclass(frozen=True)
class GeoRef:
    """Georeferencing of a raster.

    Attributes
    ----------
    crs
        ``"EPSG:<code>"`` when the GeoKeys name an EPSG code, else ``None``.
    transform
        Affine pixel→world transform ``(a, b, c, d, e, f)`` or ``None`` when unknown.
    tags
        The raw GeoTIFF tags (code → value), written back verbatim on export.
    """

    crs: str | None = None
    transform: tuple[float, float, float, float, float, float] | None = None
    tags: dict[int, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (tag codes become strings)."""
        return {
            "crs": self.crs,
            "transform": list(self.transform) if self.transform is not None else None,
            "geotiff_tags": {str(k): _jsonable(v) for k, v in self.tags.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> GeoRef | None:
        """Inverse of :meth:`to_json`; ``None`` passes through."""
        if not data:
            return None
        transform = data.get("transform")
        return cls(
            crs=data.get("crs"),
            transform=tuple(float(v) for v in transform) if transform else None,  # type: ignore[arg-type]
            tags={int(k): v for k, v in (data.get("geotiff_tags") or {}).items()},
        )

    def extratags(self) -> list[tuple[int, str, int, Any, bool]]:
        """The tags in tifffile's ``extratags`` form, for :func:`tifffile.imwrite`."""
        out = []
        for code in sorted(self.tags):
            value = self.tags[code]
            dtype = GEO_TAG_TYPES.get(code)
            if dtype is None:
                continue
            if dtype == "s":
                out.append((code, "s", 0, str(value), True))
            else:
                values = list(value) if isinstance(value, (list, tuple)) else [value]
                out.append((code, dtype, len(values), values, True))
        return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (int, float, str)) or value is None:
        return value
    return int(value) if isinstance(value, bool) else str(value)


def parse_geokeys(directory: list[int] | tuple[int, ...]) -> dict[int, int]:
    """Short-valued GeoKeys of a GeoKeyDirectory tag (key → value; others skipped)."""
    keys: dict[int, int] = {}
    if len(directory) < 4:
        return keys
    count = int(directory[3])
    for i in range(count):
        key, location, _n, value = (int(v) for v in directory[4 + 4 * i : 8 + 4 * i])
        if location == 0:
            keys[key] = value
    return keys


def georef_from_tags(tags: dict[int, Any]) -> GeoRef | None:
    """Build a :class:`GeoRef` from a TIFF page's tags (code → value); ``None`` if not a GeoTIFF."""
    geo = {code: _jsonable(tags[code]) for code in GEO_TAG_TYPES if code in tags}
    if (
        GEO_KEY_DIRECTORY not in geo
        and MODEL_TRANSFORMATION not in geo
        and MODEL_TIEPOINT not in geo
    ):
        return None
    crs = None
    if GEO_KEY_DIRECTORY in geo:
        keys = parse_geokeys(geo[GEO_KEY_DIRECTORY])
        for key in (_PROJECTED_CS_TYPE_KEY, _GEOGRAPHIC_TYPE_KEY):
            code = keys.get(key)
            if code and code != _USER_DEFINED:
                crs = f"EPSG:{code}"
                break
    transform = None
    if MODEL_TRANSFORMATION in geo:
        m = [float(v) for v in geo[MODEL_TRANSFORMATION]]
        transform = (m[0], m[1], m[3], m[4], m[5], m[7])
    elif MODEL_TIEPOINT in geo and MODEL_PIXEL_SCALE in geo:
        i, j, _k, x, y, _z = (float(v) for v in geo[MODEL_TIEPOINT][:6])
        sx, sy = (float(v) for v in geo[MODEL_PIXEL_SCALE][:2])
        transform = (sx, 0.0, x - i * sx, 0.0, -sy, y + j * sy)
    return GeoRef(crs=crs, transform=transform, tags=geo)


def gdal_metadata_xml(band_names: list[str | None] | None) -> str | None:
    """GDAL's band-description XML (tag 42112), so GDAL/QGIS/rasterio show our band names."""
    if not band_names or not any(band_names):
        return None
    from xml.sax.saxutils import escape

    items = [
        f'  <Item name="DESCRIPTION" sample="{i}" role="description">{escape(name)}</Item>'
        for i, name in enumerate(band_names)
        if name
    ]
    return "<GDALMetadata>\n" + "\n".join(items) + "\n</GDALMetadata>\n"


def band_names_from_gdal_metadata(xml: str, n_bands: int) -> list[str | None]:
    """Band descriptions from GDAL's metadata XML; missing entries are ``None``."""
    import xml.etree.ElementTree as ET

    names: list[str | None] = [None] * n_bands
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return names
    for item in root.iter("Item"):
        if item.get("role") == "description" and item.get("sample") is not None:
            idx = int(item.get("sample", "-1"))
            if 0 <= idx < n_bands and item.text:
                names[idx] = item.text.strip()
    return names
