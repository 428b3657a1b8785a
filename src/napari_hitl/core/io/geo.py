"""Georeferencing: read GeoTIFF tags into a JSON-friendly :class:`GeoRef` and write them back.

We keep the raw GeoTIFF tags (GeoKey directory, tie points, pixel scale, transformation) verbatim so
that an export reproduces the source's georeferencing exactly, and derive from them the two things
users ask for: a CRS string and the affine pixel→world transform in rasterio's order
``(a, b, c, d, e, f)``: ``x = a*col + b*row + c``, ``y = d*col + e*row + f`` (pixel corners).

- The CRS is ``"EPSG:<code>"`` when the GeoKeys name one; a user-defined CRS (no EPSG code, e.g.
  a custom Lambert projection) is described from its citation and projection keys
  (``"user-defined: <citation>"``) and written back exactly from the kept tags.
- A raster flagged PixelIsPoint (``GTRasterTypeGeoKey`` = 2) has tie points at pixel centres; its
  transform is moved half a pixel to corners, as GDAL and rasterio report it.
- GDAL's metadata (tag 42112) other than band descriptions (scale, offset, unit type, any
  dataset or band item) is kept in :attr:`GeoRef.metadata` and written back on export.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
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

_MODEL_TYPE_KEY = 1024
_GEOGRAPHIC_TYPE_KEY = 2048
_PROJECTED_CS_TYPE_KEY = 3072
_RASTER_TYPE_KEY = 1025
_PIXEL_IS_POINT = 2
_CITATION_KEYS = (3073, 1026, 2049)  # PCSCitation, GTCitation, GeogCitation (ASCII params)
_PROJECTION_KEYS = {3074: "Projection", 3075: "ProjCoordTrans", 2050: "GeogGeodeticDatum"}
_USER_DEFINED = 32767


@dataclass(frozen=True)
class GeoRef:
    """Georeferencing of a raster.

    Attributes
    ----------
    crs
        ``"EPSG:<code>"`` when the GeoKeys name an EPSG code, ``"user-defined: …"`` for a CRS
        without one, else ``None``.
    transform
        Affine pixel→world transform ``(a, b, c, d, e, f)`` of pixel corners, or ``None``.
    tags
        The raw GeoTIFF tags (code → value), written back verbatim on export.
    metadata
        GDAL metadata items other than band descriptions (see :func:`parse_gdal_metadata`).
    pixel_is_point
        Whether the source declared PixelIsPoint (its tie points are pixel centres).
    """

    crs: str | None = None
    transform: tuple[float, float, float, float, float, float] | None = None
    tags: dict[int, Any] = field(default_factory=dict)
    metadata: list[dict[str, Any]] = field(default_factory=list)
    pixel_is_point: bool = False

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (tag codes become strings)."""
        out: dict[str, Any] = {
            "crs": self.crs,
            "transform": list(self.transform) if self.transform is not None else None,
            "geotiff_tags": {str(k): _jsonable(v) for k, v in self.tags.items()},
        }
        if self.metadata:
            out["gdal_metadata"] = [dict(item) for item in self.metadata]
        if self.pixel_is_point:
            out["pixel_is_point"] = True
        return out

    def dataset_metadata(self) -> list[dict[str, Any]]:
        """The GDAL metadata items that describe the whole raster (not one band)."""
        return [item for item in self.metadata if item.get("sample") is None]

    def with_band_metadata(self, per_band: Sequence[Sequence[dict[str, Any]]]) -> GeoRef:
        """A copy whose band items are ``per_band[i]`` for band ``i`` (dataset items kept)."""
        items = self.dataset_metadata()
        for i, band_items in enumerate(per_band):
            items += [{**item, "sample": i} for item in band_items]
        return replace(self, metadata=items)

    def items_of_band(self, band: int) -> list[dict[str, Any]]:
        """The GDAL metadata items of one band."""
        return [item for item in self.metadata if item.get("sample") == band]

    def band_metadata(self, band: int) -> dict[str, str]:
        """GDAL items of one band by role or name, e.g. ``{"scale": "0.0001",
        "offset": "0", "unittype": "m"}``."""
        return {
            str(item.get("role") or item["name"]).lower(): str(item.get("text", ""))
            for item in self.items_of_band(band)
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
            metadata=[dict(item) for item in data.get("gdal_metadata") or []],
            pixel_is_point=bool(data.get("pixel_is_point", False)),
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


def _ascii_key(geo: dict[int, Any], keys_raw: list[int], key: int) -> str | None:
    """The text of an ASCII GeoKey (stored in GeoAsciiParams), ``None`` when absent."""
    ascii_params = str(geo.get(GEO_ASCII_PARAMS, ""))
    count = int(keys_raw[3]) if len(keys_raw) >= 4 else 0
    for i in range(count):
        k, location, n, offset = (int(v) for v in keys_raw[4 + 4 * i : 8 + 4 * i])
        if k == key and location == GEO_ASCII_PARAMS:
            return ascii_params[offset : offset + n].rstrip("|").strip() or None
    return None


def describe_crs(geo: dict[int, Any]) -> str | None:
    """A CRS string from GeoTIFF tags: ``"EPSG:<code>"``, or for a user-defined CRS
    ``"user-defined: <citation>"`` (with its projection keys when there is no citation)."""
    if GEO_KEY_DIRECTORY not in geo:
        return None
    raw = [int(v) for v in geo[GEO_KEY_DIRECTORY]]
    keys = parse_geokeys(raw)
    projected = keys.get(_MODEL_TYPE_KEY) == 1 or _PROJECTED_CS_TYPE_KEY in keys
    # A user-defined projection on an EPSG geographic base is not that base: only the key of
    # the model's own kind may name the CRS.
    code = keys.get(_PROJECTED_CS_TYPE_KEY if projected else _GEOGRAPHIC_TYPE_KEY)
    if code and code != _USER_DEFINED:
        return f"EPSG:{code}"
    if not any(k in keys for k in (_PROJECTED_CS_TYPE_KEY, _GEOGRAPHIC_TYPE_KEY, 3074, 3075)):
        return None
    citation = next((c for k in _CITATION_KEYS if (c := _ascii_key(geo, raw, k))), None)
    if citation:
        return f"user-defined: {citation}"
    parts = [f"{name} {keys[k]}" for k, name in _PROJECTION_KEYS.items() if k in keys]
    return "user-defined" + (f" ({', '.join(parts)})" if parts else "")


def georef_from_tags(tags: dict[int, Any]) -> GeoRef | None:
    """Build a :class:`GeoRef` from a TIFF page's tags (code → value); ``None`` if not a GeoTIFF."""
    geo = {code: _jsonable(tags[code]) for code in GEO_TAG_TYPES if code in tags}
    metadata = [
        item
        for item in parse_gdal_metadata(str(tags.get(GDAL_METADATA) or ""))
        if item.get("role") != "description"
    ]
    if (
        GEO_KEY_DIRECTORY not in geo
        and MODEL_TRANSFORMATION not in geo
        and MODEL_TIEPOINT not in geo
    ):
        return GeoRef(metadata=metadata) if metadata else None
    keys = parse_geokeys(geo.get(GEO_KEY_DIRECTORY, []))
    point = keys.get(_RASTER_TYPE_KEY) == _PIXEL_IS_POINT
    transform = None
    if MODEL_TRANSFORMATION in geo:
        m = [float(v) for v in geo[MODEL_TRANSFORMATION]]
        transform = (m[0], m[1], m[3], m[4], m[5], m[7])
    elif MODEL_TIEPOINT in geo and MODEL_PIXEL_SCALE in geo:
        i, j, _k, x, y, _z = (float(v) for v in geo[MODEL_TIEPOINT][:6])
        sx, sy = (float(v) for v in geo[MODEL_PIXEL_SCALE][:2])
        transform = (sx, 0.0, x - i * sx, 0.0, -sy, y + j * sy)
    if transform is not None and point:  # tie points at pixel centres: report corners
        a, b, c, d, e, f = transform
        transform = (a, b, c - 0.5 * (a + b), d, e, f - 0.5 * (d + e))
    return GeoRef(
        crs=describe_crs(geo),
        transform=transform,
        tags=geo,
        metadata=metadata,
        pixel_is_point=point,
    )


def parse_gdal_metadata(xml: str) -> list[dict[str, Any]]:
    """The items of GDAL's metadata XML (tag 42112): ``{"name", "sample" (band index or None),
    "role" (e.g. ``"scale"``, ``"offset"``, ``"unittype"``, ``"description"``) or None,
    "text"}`` each, in file order; ``[]`` for empty or malformed XML."""
    import xml.etree.ElementTree as ET

    if not xml.strip():
        return []
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return []
    items = []
    for item in root.iter("Item"):
        sample = item.get("sample")
        items.append(
            {
                "name": item.get("name", ""),
                "sample": int(sample) if sample is not None and sample.isdigit() else None,
                "role": item.get("role"),
                "text": (item.text or "").strip(),
            }
        )
    return items


def gdal_metadata_xml(
    band_names: list[str | None] | None, items: Sequence[dict[str, Any]] = ()
) -> str | None:
    """GDAL's metadata XML (tag 42112): band descriptions, so GDAL/QGIS/rasterio show our band
    names, and further ``items`` (from :func:`parse_gdal_metadata`: scale, offset, units…)."""
    from xml.sax.saxutils import escape, quoteattr

    lines = [
        f'  <Item name="DESCRIPTION" sample="{i}" role="description">{escape(name)}</Item>'
        for i, name in enumerate(band_names or [])
        if name
    ]
    for item in items:
        if item.get("role") == "description":
            continue
        attrs = f"name={quoteattr(str(item.get('name', '')))}"
        if item.get("sample") is not None:
            attrs += f' sample="{int(item["sample"])}"'
        if item.get("role"):
            attrs += f" role={quoteattr(str(item['role']))}"
        lines.append(f"  <Item {attrs}>{escape(str(item.get('text', '')))}</Item>")
    if not lines:
        return None
    return "<GDALMetadata>\n" + "\n".join(lines) + "\n</GDALMetadata>\n"


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
