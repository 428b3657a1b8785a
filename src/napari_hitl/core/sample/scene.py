"""A deterministic synthetic satellite-like scene: 14 spectral bands, a DSM and a ground truth.

The scene is the plugin's sample data and doubles as test data.  It imitates a WorldView-3-like
acquisition (8 VNIR + 6 SWIR bands, reflectance in [0, 1]) of a small town with a digital surface
model (DSM, metres above sea level) and a five-class ground truth:

====  ==========  ==================================================================
 1    vegetation  smooth-noise patches of forest (raised trees) and fields/grass
 2    ground      bare soil with sparse grass, everything that is not another class
 3    road        long thin polylines (3–7 px) forming a grid-ish network
 4    building    rectangles along the roads, several roof materials, 4–25 m tall
 5    water       a meandering river, sometimes a lake, slightly below its banks
====  ==========  ==================================================================

Spectra are linear mixtures of reference spectra (endmembers) with smooth spatial mixing fields,
a smooth illumination gradient and haze, a mild point-spread blur (mixed pixels at class edges)
and per-pixel noise, so that the classes are learnable but not trivially separable.

Only numpy, scipy and scikit-image are used; generation of a 512×512 scene takes a fraction of a
second.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from itertools import pairwise

import numpy as np
from scipy import ndimage as ndi
from skimage.draw import disk as draw_disk
from skimage.draw import polygon as draw_polygon

__all__ = [
    "BAND_NAMES",
    "CLASS_COLORS",
    "CLASS_NAMES",
    "DSM_BAND",
    "RGB_BANDS",
    "WAVELENGTHS_NM",
    "SampleScene",
    "make_sample_scene",
]

CLASS_NAMES: tuple[str, ...] = ("vegetation", "ground", "road", "building", "water")
CLASS_COLORS: tuple[str, ...] = ("#2ca02c", "#c49a6c", "#808080", "#d9482b", "#1f5fd6")

VEGETATION, GROUND, ROAD, BUILDING, WATER = 1, 2, 3, 4, 5

# WorldView-3-like centre wavelengths (nm): coastal, blue, green, yellow, red, red edge, NIR1,
# NIR2, then six SWIR bands.
_WL = (427.0, 478.0, 546.0, 608.0, 659.0, 724.0, 833.0, 949.0)
_WL += (1210.0, 1570.0, 1660.0, 1730.0, 2165.0, 2260.0)
N_SPECTRAL = len(_WL)
BAND_NAMES: tuple[str, ...] = (*(f"B{i + 1:02d}" for i in range(N_SPECTRAL)), "DSM")
WAVELENGTHS_NM: tuple[float | None, ...] = (*_WL, None)
UNITS: tuple[str, ...] = ("reflectance",) * N_SPECTRAL + ("m",)
RGB_BANDS: tuple[int, int, int] = (4, 2, 1)  # red 659 nm, green 546 nm, blue 478 nm
RED_BAND = 4
NIR_BAND = 6
DSM_BAND = 14

# Reference reflectance spectra at _WL, one material per line (see the file's header).
_ENDMEMBER_TABLE = (files(__package__) / "endmembers.txt").read_text(encoding="utf-8")
_ENDMEMBERS: dict[str, tuple[float, ...]] = {
    line.split()[0]: tuple(float(v) for v in line.split()[1:])
    for line in _ENDMEMBER_TABLE.strip().splitlines()
    if not line.startswith("#")
}
_EM_NAMES = tuple(_ENDMEMBERS)
_EM = {name: i for i, name in enumerate(_EM_NAMES)}
_ROOFS = ("roof_tile", "roof_concr", "roof_dark", "roof_metal")
_ROOF_P = (0.35, 0.3, 0.2, 0.15)


@dataclass(frozen=True)
class SampleScene:
    """A synthetic multiband scene with its ground truth.

    Attributes
    ----------
    bands : numpy.ndarray
        ``(15, H, W)`` float32: 14 reflectances in [0, 1], then the DSM in metres.
    ground_truth : numpy.ndarray
        ``(H, W)`` uint8 with values 1..5 (see :data:`CLASS_NAMES`); 0 is never used.
    band_names, wavelengths_nm, units : tuple
        Per-band metadata (15 entries each; the DSM has no wavelength and unit ``"m"``).
    rgb_bands : tuple of int
        Indices of the red, green and blue bands.
    class_names, class_colors : tuple of str
        Names and ``#rrggbb`` colours of classes 1..5.
    """

    bands: np.ndarray
    ground_truth: np.ndarray
    band_names: tuple[str, ...] = BAND_NAMES
    wavelengths_nm: tuple[float | None, ...] = WAVELENGTHS_NM
    units: tuple[str, ...] = UNITS
    rgb_bands: tuple[int, int, int] = RGB_BANDS
    class_names: tuple[str, ...] = CLASS_NAMES
    class_colors: tuple[str, ...] = CLASS_COLORS


# --------------------------------------------------------------------------------------------
# random fields


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """A smooth random field, standardised to zero mean and unit std, features of ~`scale` px.

    White noise on a coarse grid (spacing `scale`) is interpolated with Gaussian kernels, done as
    two small matrix products, which is much cheaper than filtering a full-size image.
    """
    scale = max(float(scale), 1.0)

    def basis(n: int) -> np.ndarray:
        m = int(np.ceil(n / scale)) + 5
        pos = np.arange(n) / scale + 2.0 + rng.uniform(0.0, 1.0)
        d = pos[:, None] - np.arange(m)[None, :]
        return np.exp(-0.5 * (d / 0.75) ** 2).astype(np.float32)

    ry, rx = basis(shape[0]), basis(shape[1])
    coarse = rng.standard_normal((ry.shape[1], rx.shape[1])).astype(np.float32)
    # einsum rather than BLAS matmul: these products are small, and a multithreaded BLAS on a
    # busy machine can be orders of magnitude slower than a single-threaded loop
    field = np.einsum("ik,jk->ij", np.einsum("ik,kl->il", ry, coarse), rx)
    field -= field.mean()
    std = field.std()
    return field / std if std > 0 else field


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _psf_blur(x: np.ndarray, sigma: float = 0.6) -> np.ndarray:
    """Gaussian blur of the last two axes with a 3-tap kernel (good for sigma <= ~0.7).

    Much cheaper than :func:`scipy.ndimage.gaussian_filter` on a band stack; edges are 'nearest'.
    """
    c1 = np.float32(np.exp(-0.5 / sigma**2))
    c1, c0 = c1 / (1 + 2 * c1), 1 / (1 + 2 * c1)
    x = np.asarray(x, np.float32)
    y = x * np.float32(c0)
    y[..., 1:, :] += c1 * x[..., :-1, :]
    y[..., :-1, :] += c1 * x[..., 1:, :]
    y[..., 0, :] += c1 * x[..., 0, :]
    y[..., -1, :] += c1 * x[..., -1, :]
    z = y * np.float32(c0)
    z[..., 1:] += c1 * y[..., :-1]
    z[..., :-1] += c1 * y[..., 1:]
    z[..., 0] += c1 * y[..., 0]
    z[..., -1] += c1 * y[..., -1]
    return z


def _centred_coords(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Row and column coordinates (broadcastable) relative to the centre, in units of max(H, W)."""
    h, w = shape
    size = max(h, w)
    yy = (np.arange(h, dtype=np.float32)[:, None] - h / 2) / size
    xx = (np.arange(w, dtype=np.float32)[None, :] - w / 2) / size
    return yy, xx


def _illumination(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Smooth multiplicative illumination: a linear gradient in a random direction (20 % per
    image size, i.e. ±10 % at the edges) plus a gentle low-frequency undulation (3 %)."""
    ang = rng.uniform(0, 2 * np.pi)
    yy, xx = _centred_coords(shape)
    undulation = _smooth_noise(rng, shape, max(shape) / 3)
    return 1 + 0.2 * (np.cos(ang) * yy + np.sin(ang) * xx) + 0.03 * undulation


# --------------------------------------------------------------------------------------------
# layout


@dataclass
class _Road:
    points: np.ndarray  # (k, 2) float (row, col) control points
    width: int


def _make_roads(rng: np.random.Generator, shape: tuple[int, int]) -> list[_Road]:
    """Grid-ish network of polylines that cross the whole image, main roads wider."""
    h, w = shape
    roads: list[_Road] = []
    for axis in (0, 1):  # axis 0: roads running left→right (spaced along rows)
        span, length = (h, w) if axis == 0 else (w, h)
        n = max(1, round(span / 220 + rng.uniform(-0.3, 0.7)))
        offsets = (np.arange(n) + 0.5 + rng.uniform(-0.25, 0.25, n)) / n * span
        for i, off in enumerate(offsets):
            k = int(rng.integers(4, 7))
            along = np.linspace(-0.05 * length, 1.05 * length, k)
            along[1:-1] += rng.uniform(-0.3, 0.3, k - 2) * (along[1] - along[0])
            slope = np.tan(np.deg2rad(rng.uniform(-12, 12)))
            across = off + slope * (along - length / 2) + rng.normal(0, 0.025 * span, k)
            pts = np.stack([across, along], 1) if axis == 0 else np.stack([along, across], 1)
            width = int(rng.integers(6, 8)) if i == 0 else int(rng.integers(3, 6))
            roads.append(_Road(pts, width))
    return roads


def _add_side_streets(
    rng: np.random.Generator, roads: list[_Road], river: np.ndarray, urban: np.ndarray
) -> list[_Road]:
    """Short dead-end streets branching off the through roads, mostly in the urban core."""
    h, w = river.shape
    size = max(h, w)
    out: list[_Road] = []
    near_river = ndi.binary_dilation(river, iterations=8)
    n_side = round(size / 512 * rng.uniform(3, 7))
    for _ in range(12 * n_side):
        if len(out) >= n_side:
            break
        parent = roads[rng.integers(len(roads))]
        seg = int(rng.integers(len(parent.points) - 1))
        p0, p1 = parent.points[seg], parent.points[seg + 1]
        start = p0 + rng.uniform(0.1, 0.9) * (p1 - p0)
        iy, ix = int(start[0]), int(start[1])
        if not (0 <= iy < h and 0 <= ix < w) or rng.random() > _sigmoid(2 * urban[iy, ix] + 0.5):
            continue
        along = (p1 - p0) / np.hypot(*(p1 - p0))
        normal = np.array([-along[1], along[0]]) * rng.choice([-1.0, 1.0])
        tilt = rng.normal(0, 0.08)
        direction = np.cos(tilt) * normal + np.sin(tilt) * along
        length = rng.uniform(0.12, 0.3) * size
        mid = start + direction * length * 0.5 + rng.normal(0, 0.02 * size, 2)
        end = start + direction * length
        pts = np.array([start, mid, end])
        t = np.linspace(0, 1, 64)[:, None]
        line = np.concatenate([pts[0] + t * (pts[1] - pts[0]), pts[1] + t * (pts[2] - pts[1])])
        li = np.round(line).astype(int)
        inside = (li[:, 0] >= 0) & (li[:, 0] < h) & (li[:, 1] >= 0) & (li[:, 1] < w)
        if inside.mean() < 0.8:
            continue
        if near_river[li[inside, 0], li[inside, 1]].any():
            continue
        out.append(_Road(pts, int(rng.integers(3, 5))))
    return out


def _rasterize_roads(roads: list[_Road], shape: tuple[int, int]) -> np.ndarray:
    """Pixels within width/2 of a road's polyline: a rectangle per segment, a disk per joint."""
    mask = np.zeros(shape, bool)
    for road in roads:
        half = road.width / 2
        for p0, p1 in pairwise(road.points):
            along = (p1 - p0) / np.hypot(*(p1 - p0))
            normal = np.array([-along[1], along[0]])
            off = half * normal
            corners = np.array([p0 + off, p1 + off, p1 - off, p0 - off])
            mask[draw_polygon(corners[:, 0], corners[:, 1], shape=shape)] = True
        for p in road.points[1:-1]:
            mask[draw_disk(tuple(p), half + 0.01, shape=shape)] = True
    return mask


def _make_river(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A wide meandering band crossing the image along a random axis."""
    transpose = bool(rng.integers(0, 2))
    h, w = (shape[1], shape[0]) if transpose else shape  # river runs along rows (top→bottom)
    t = np.arange(h, dtype=np.float32)
    lam = rng.uniform(0.6, 1.2) * h
    amp = rng.uniform(0.05, 0.12) * w
    wiggle = _smooth_noise(rng, (h, 1), max(h / 6, 4))[:, 0]
    centre = (
        rng.uniform(0.2, 0.8) * w
        + amp * np.sin(2 * np.pi * t / lam + rng.uniform(0, 6.3))
        + 0.03 * w * wiggle
    )
    width = max(rng.uniform(0.05, 0.08) * w, 8.0)
    width_t = width * (1 + 0.2 * _smooth_noise(rng, (h, 1), max(h / 4, 4))[:, 0])
    x = np.arange(w, dtype=np.float32)[None, :]
    mask = np.abs(x - centre[:, None]) < width_t[:, None] / 2
    return mask.T if transpose else mask


def _make_lake(
    rng: np.random.Generator, shape: tuple[int, int], far_from: np.ndarray
) -> np.ndarray:
    """A noisy elliptical blob placed where `far_from` (a distance map) allows it."""
    h, w = shape
    lake = np.zeros(shape, bool)
    radius = max(rng.uniform(0.05, 0.09) * min(h, w), 6.0)
    cand = np.flatnonzero(far_from > radius * 1.3 + 4)
    if cand.size == 0:
        return lake
    cy, cx = np.unravel_index(cand[rng.integers(cand.size)], shape)
    ext = int(np.ceil(radius * 2.2))
    r0, r1, c0, c1 = max(cy - ext, 0), min(cy + ext + 1, h), max(cx - ext, 0), min(cx + ext + 1, w)
    yy, xx = np.mgrid[r0:r1, c0:c1].astype(np.float32)
    ang = rng.uniform(0, np.pi)
    a = rng.uniform(1.0, 1.6)
    u = ((yy - cy) * np.cos(ang) + (xx - cx) * np.sin(ang)) / (radius * a)
    v = (-(yy - cy) * np.sin(ang) + (xx - cx) * np.cos(ang)) * a / radius
    wobble = _smooth_noise(rng, (r1 - r0, c1 - c0), max(radius / 1.5, 2))
    lake[r0:r1, c0:c1] = np.hypot(u, v) < 1 + 0.2 * wobble
    return lake & (far_from > 3)


def _rect(
    centre: np.ndarray, along: np.ndarray, normal: np.ndarray, a: float, b: float
) -> tuple[np.ndarray, np.ndarray]:
    """Corners (rows, cols) of a rectangle of size `a` along `along` and `b` along `normal`."""
    corners = [
        centre + sa * along * a / 2 + sb * normal * b / 2
        for sa, sb in ((-1, -1), (1, -1), (1, 1), (-1, 1))
    ]
    c = np.array(corners)
    return c[:, 0], c[:, 1]


def _place_buildings(
    rng: np.random.Generator,
    roads: list[_Road],
    occupied: np.ndarray,
    urban: np.ndarray,
) -> np.ndarray:
    """Rectangular buildings along both sides of every road segment; returns building ids."""
    shape = occupied.shape
    h, w = shape
    ids = np.zeros(shape, np.int32)
    occupied = occupied.copy()
    n_ids = 0

    def try_place(
        centre: np.ndarray, along: np.ndarray, normal: np.ndarray, a: float, b: float
    ) -> bool:
        nonlocal n_ids
        rr, cc = draw_polygon(*_rect(centre, along, normal, a, b), shape=shape)
        if rr.size < 0.6 * a * b or occupied[rr, cc].any():
            return False
        n_ids += 1
        ids[rr, cc] = n_ids
        er, ec = draw_polygon(*_rect(centre, along, normal, a + 4, b + 4), shape=shape)
        occupied[er, ec] = True
        return True

    for bonus in (0.0, 1.0):  # second pass only if the first left the town too sparse
        for road in roads:
            for p0, p1 in pairwise(road.points):
                seg = p1 - p0
                seg_len = float(np.hypot(*seg))
                along = seg / seg_len
                normal = np.array([-along[1], along[0]])
                for side in (-1.0, 1.0):
                    s = rng.uniform(0, 10)
                    while s < seg_len:
                        big = rng.random() < 0.06
                        a = rng.uniform(22, 40) if big else rng.uniform(7, 22)
                        b = rng.uniform(20, 36) if big else rng.uniform(7, 18)
                        setback = rng.uniform(2.5, 7)
                        centre = (
                            p0
                            + along * (s + a / 2)
                            + side * normal * (road.width / 2 + setback + b / 2)
                        )
                        s += a + rng.uniform(2, 9)
                        iy = int(np.clip(centre[0], 0, h - 1))
                        ix = int(np.clip(centre[1], 0, w - 1))
                        p_accept = float(np.clip(0.45 + 0.3 * urban[iy, ix], 0.08, 0.95)) + bonus
                        if rng.random() > p_accept:
                            continue
                        placed = try_place(centre, along, normal, a, b)
                        # a second row behind the first, more often in denser parts
                        if placed and b <= 18 and rng.random() < 0.5 * p_accept:
                            b2 = rng.uniform(7, 16)
                            back = centre + side * normal * (b / 2 + rng.uniform(3, 6) + b2 / 2)
                            try_place(back, along, normal, rng.uniform(7, 20), b2)
        if (ids > 0).mean() >= 0.05:
            break
    return ids


# --------------------------------------------------------------------------------------------
# the scene


def make_sample_scene(shape: tuple[int, int] = (512, 512), seed: int = 0) -> SampleScene:
    """Make a deterministic synthetic satellite-like scene of a small town.

    Parameters
    ----------
    shape : tuple of int
        ``(H, W)`` of the scene, each at least 16.  All five classes are present (each on at
        least ~2 % of the pixels) from 128×128 on.
    seed : int
        Seed of the random generator: the same ``(shape, seed)`` always gives identical arrays.

    Returns
    -------
    SampleScene
        14 reflectance bands (WorldView-3-like, see :data:`WAVELENGTHS_NM`) and a DSM in metres
        as a ``(15, H, W)`` float32 array, plus a ``(H, W)`` uint8 ground truth with values 1..5.
    """
    h, w = (int(s) for s in shape)
    if h < 16 or w < 16:
        raise ValueError(f"shape must be at least (16, 16), got {tuple(shape)}")
    rng = np.random.default_rng(seed)
    size = float(max(h, w))

    def noise(scale: float) -> np.ndarray:
        return _smooth_noise(rng, (h, w), scale)

    # ---- layout ---------------------------------------------------------------------------
    urban = noise(size / 2.5)
    river = _make_river(rng, (h, w))
    roads = _make_roads(rng, (h, w))
    roads += _add_side_streets(rng, roads, river, urban)
    road = _rasterize_roads(roads, (h, w))
    dist_road = ndi.distance_transform_edt(~road)
    water = river & ~road  # roads cross the river on bridges
    if rng.random() < 0.7:
        water |= _make_lake(rng, (h, w), np.where(river, 0.0, dist_road))
    occupied = (dist_road <= 2.5) | ndi.binary_dilation(water, iterations=3)
    building_ids = _place_buildings(rng, roads, occupied, urban)
    building = building_ids > 0

    # vegetation: irregular field parcels (Voronoi cells) + smooth forest/garden patches
    free = ~(road | water | building)
    n_parcels = max(4, int(h * w / rng.uniform(45, 70) ** 2))
    seeds = np.ones((h, w), bool)
    seeds.flat[rng.choice(h * w, n_parcels, replace=False)] = False
    parcel = np.ravel_multi_index(
        ndi.distance_transform_edt(seeds, return_distances=False, return_indices=True), (h, w)
    )
    parcel_value = rng.standard_normal(h * w).astype(np.float32)[parcel]
    forest_score = noise(size / 9)
    veg_score = 0.7 * parcel_value + forest_score + 0.3 * noise(size / 25) - 0.3 * urban
    veg_frac = rng.uniform(0.45, 0.6)
    threshold = np.quantile(veg_score[free], 1 - veg_frac) if free.any() else np.inf
    vegetation = free & (veg_score > threshold)
    forest = vegetation & (forest_score > 0.3)

    gt = np.full((h, w), GROUND, np.uint8)
    gt[vegetation] = VEGETATION
    gt[road] = ROAD
    gt[building] = BUILDING
    gt[water] = WATER

    # ---- spectra: abundances of the endmembers ---------------------------------------------
    ab = np.zeros((len(_EM_NAMES), h, w), np.float32)

    tf = _sigmoid(3.0 * forest_score)  # share of forest in the mixture (trees where tf > 0.71)
    g = _sigmoid(2.0 * noise(size / 12))  # crop vs grass
    s = np.clip(0.08 + 0.12 * noise(size / 15), 0.0, 0.35) * (1 - 0.7 * tf)  # soil showing
    v = vegetation.astype(np.float32)
    ab[_EM["forest"]] += v * tf * (1 - s)
    ab[_EM["crop"]] += v * (1 - tf) * g * (1 - s)
    ab[_EM["grass"]] += v * (1 - tf) * (1 - g) * (1 - s)
    ab[_EM["soil_dry"]] += v * s

    m = _sigmoid(1.5 * noise(size / 10))  # soil moisture
    q = np.clip(0.12 + 0.12 * noise(size / 14), 0.0, 0.4)  # sparse grass on bare ground
    gr = (gt == GROUND).astype(np.float32)
    ab[_EM["soil_dry"]] += gr * (1 - m) * (1 - q)
    ab[_EM["soil_moist"]] += gr * m * (1 - q)
    ab[_EM["grass"]] += gr * q

    o = _sigmoid(1.5 * noise(size / 10))  # weathered asphalt
    rd = road.astype(np.float32)
    ab[_EM["asphalt"]] += rd * (1 - o)
    ab[_EM["asphalt_old"]] += rd * o

    n_b = int(building_ids.max())
    material = rng.choice(len(_ROOFS), size=n_b + 1, p=_ROOF_P)
    roof_gain = rng.uniform(0.85, 1.15, n_b + 1).astype(np.float32)
    roof_gain[0] = 1.0
    for k, name in enumerate(_ROOFS):
        ab[_EM[name]] += building & (material[building_ids] == k)

    t = _sigmoid(2.0 * noise(size / 8))  # turbidity
    wt = water.astype(np.float32)
    ab[_EM["water_clear"]] += wt * (1 - t)
    ab[_EM["water_turb"]] += wt * t

    em = np.array([_ENDMEMBERS[n] for n in _EM_NAMES], np.float32)  # (n_em, 14)
    refl = np.einsum("ek,ep->kp", em, ab.reshape(len(_EM_NAMES), -1)).reshape(N_SPECTRAL, h, w)

    # brightness variation, illumination gradient and haze
    gain = _illumination(rng, (h, w)) * (1 + 0.07 * noise(size / 25)) * roof_gain[building_ids]
    refl *= gain[None]
    haze = 0.012 * (1 + 0.5 * noise(size / 2))
    refl += haze[None] * (478.0 / np.asarray(_WL, np.float32)[:, None, None]) ** 2
    refl = _psf_blur(refl, 0.6)  # sensor point-spread function: mixed pixels at edges
    sd = np.sqrt((0.04 * refl) ** 2 + 0.004**2)
    refl += sd * rng.standard_normal(refl.shape, dtype=np.float32)
    np.clip(refl, 0.0, 1.0, out=refl)

    # ---- DSM ----------------------------------------------------------------------------------
    slope = rng.uniform(10, 30)
    ang = rng.uniform(0, 2 * np.pi)
    yy, xx = _centred_coords((h, w))
    ramp = 0.5 + 0.7 * (np.cos(ang) * yy + np.sin(ang) * xx)  # in [0, 1]
    terrain = rng.uniform(108, 120) + slope * ramp + 5.0 * noise(size / 3) + 1.5 * noise(size / 8)
    dist_water = ndi.distance_transform_edt(~water)
    valley = 3.0 * np.exp(-dist_water / (0.05 * size + 5))
    dsm = terrain - valley
    dsm[water] -= 1.0  # water surface below the banks
    bridge = road & river
    dsm[bridge] = terrain[bridge] + 0.5

    if n_b:
        flat = building_ids.ravel()
        counts = np.bincount(flat, minlength=n_b + 1)
        ground_level = np.bincount(flat, weights=dsm.ravel(), minlength=n_b + 1)
        ground_level /= np.maximum(counts, 1)
        rows, cols = np.indices((h, w))
        cy = np.bincount(flat, weights=rows.ravel(), minlength=n_b + 1) / np.maximum(counts, 1)
        cx = np.bincount(flat, weights=cols.ravel(), minlength=n_b + 1) / np.maximum(counts, 1)
        urban_at = urban[cy.astype(int), cx.astype(int)]
        heights = 4.0 + rng.gamma(2.0, 2.5, n_b + 1) + 4.0 * np.clip(urban_at, 0, None)
        roof = ground_level + np.minimum(heights, 25.0)
        dsm[building] = roof[building_ids[building]]

    tree_h = 3.0 + 7.0 * _sigmoid(1.5 * noise(size / 15))
    canopy = tree_h * (1 + 0.2 * rng.standard_normal((h, w), dtype=np.float32))
    dsm[forest] += np.maximum(canopy[forest], 1.0)
    field = vegetation & ~forest
    dsm[field] += 0.2 * np.clip(1 + noise(size / 12)[field], 0, None)  # crops: < 1 m
    dsm = _psf_blur(dsm, 0.6)
    dsm += 0.12 * rng.standard_normal((h, w), dtype=np.float32)

    bands = np.concatenate([refl, dsm[None].astype(np.float32)], 0).astype(np.float32)
    return SampleScene(bands=bands, ground_truth=gt)


# --------------------------------------------------------------------------------------------
# scribbles
