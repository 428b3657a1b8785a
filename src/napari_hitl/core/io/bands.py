"""Band metadata: names, wavelengths, robust normalization statistics, RGB composite choice."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_hitl.core.jsonable import Jsonable

# Centre wavelengths (nm) of common sensors' band names, so that an RGB composite and the NIR band
# can be found without the user telling us. Sentinel-2 and Landsat 8/9 OLI.
_SENTINEL2_NM = {
    "B01": 443.0,
    "B02": 490.0,
    "B03": 560.0,
    "B04": 665.0,
    "B05": 705.0,
    "B06": 740.0,
    "B07": 783.0,
    "B08": 842.0,
    "B8A": 865.0,
    "B09": 945.0,
    "B10": 1375.0,
    "B11": 1610.0,
    "B12": 2190.0,
}
_COMMON_NM = {
    "coastal": 443.0,
    "blue": 490.0,
    "b": 490.0,
    "green": 560.0,
    "g": 560.0,
    "yellow": 605.0,
    "red": 665.0,
    "r": 665.0,
    "rededge": 705.0,
    "red_edge": 705.0,
    "nir": 842.0,
    "swir1": 1610.0,
    "swir2": 2190.0,
}
_DSM_NAMES = {"dsm", "dem", "dtm", "height", "elevation", "ndsm", "lidar"}


def wavelength_for_name(name: str | None) -> float | None:
    """Centre wavelength in nm for a recognised band name (Sentinel-2 ``B04``/``B4``, ``red``, ...).

    Returns ``None`` for names we do not know; we never guess from position.
    """
    if not name:
        return None
    key = name.strip()
    m = re.fullmatch(r"[Bb](\d{1,2})([Aa]?)", key)
    if m:
        key = f"B{int(m.group(1)):02d}" if not m.group(2) else f"B{int(m.group(1))}A"
        return _SENTINEL2_NM.get(key)
    m = re.search(r"(\d{3,4}(?:\.\d+)?)\s*nm", key)
    if m:
        return float(m.group(1))
    return _COMMON_NM.get(key.lower().replace(" ", "").replace("-", ""))


def is_height_band(name: str | None) -> bool:
    """Whether a band name says it holds heights (DSM/DEM/nDSM...)."""
    return bool(name) and name.strip().lower() in _DSM_NAMES  # type: ignore[union-attr]


@dataclass
class BandStats(Jsonable):
    """Robust statistics of one band over its valid (finite, not nodata) pixels."""

    p1: float
    p2: float
    p50: float
    p98: float
    p99: float
    mean: float
    std: float
    min: float
    max: float
    valid_pixels: int


@dataclass
class BandInfo:
    """Metadata of one band of an image in the store."""

    name: str
    role: str = "spectral"  # "spectral" | "dsm" | "other"
    unit: str | None = None
    wavelength_nm: float | None = None
    stats: BandStats | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {
            "name": self.name,
            "role": self.role,
            "unit": self.unit,
            "wavelength_nm": self.wavelength_nm,
            "stats": self.stats.to_json() if self.stats else None,
            **({"extra": self.extra} if self.extra else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BandInfo:
        """Inverse of :meth:`to_json`."""
        stats = data.get("stats")
        return cls(
            name=data["name"],
            role=data.get("role", "spectral"),
            unit=data.get("unit"),
            wavelength_nm=data.get("wavelength_nm"),
            stats=BandStats(**stats) if stats else None,
            extra=data.get("extra", {}),
        )


def robust_stats(values: np.ndarray, nodata: float | None = None) -> BandStats:
    """Percentiles, mean and spread of one band's valid values.

    Parameters
    ----------
    values
        Any-shaped array of one band (a subsample is fine).
    nodata
        Value that marks missing pixels, excluded like NaN and inf.
    """
    v = np.asarray(values).ravel()
    valid = np.isfinite(v) if v.dtype.kind == "f" else np.ones(v.shape, bool)
    if nodata is not None and np.isfinite(nodata):
        valid &= v != nodata
    v = v[valid].astype(np.float64)
    if v.size == 0:
        nan = float("nan")
        return BandStats(nan, nan, nan, nan, nan, nan, nan, nan, nan, 0)
    p1, p2, p50, p98, p99 = np.percentile(v, [1, 2, 50, 98, 99])
    return BandStats(
        p1=float(p1),
        p2=float(p2),
        p50=float(p50),
        p98=float(p98),
        p99=float(p99),
        mean=float(v.mean()),
        std=float(v.std()),
        min=float(v.min()),
        max=float(v.max()),
        valid_pixels=int(v.size),
    )


def default_rgb(bands: list[BandInfo]) -> tuple[int, int, int]:
    """Pick the bands of an RGB composite: nearest to 665/560/490 nm, else by name, else 0,1,2."""
    n = len(bands)
    if n < 3:
        return (0, 0, 0)
    waves = [b.wavelength_nm if b.role == "spectral" else None for b in bands]
    if sum(w is not None for w in waves) >= 3:
        picks = []
        for target in (665.0, 560.0, 490.0):
            dists = [abs(w - target) if w is not None else np.inf for w in waves]
            picks.append(int(np.argmin(dists)))
        if len(set(picks)) == 3:
            return (picks[0], picks[1], picks[2])
    spectral = [i for i, b in enumerate(bands) if b.role == "spectral"]
    if len(spectral) >= 3:
        return (spectral[0], spectral[1], spectral[2])
    return (0, 1, 2)


def subsample_for_stats(shape: tuple[int, ...], max_pixels: int = 1_000_000) -> tuple[slice, ...]:
    """Regular strides over the trailing (spatial) axes keeping at most ``max_pixels`` per band."""
    spatial = shape[-2:]
    total = int(np.prod(spatial))
    step = max(1, int(np.ceil(np.sqrt(total / max_pixels))))
    return tuple(slice(None) for _ in shape[:-2]) + (slice(None, None, step),) * 2
