"""Tests of the synthetic sample scene and the simulated scribbles."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.measure import regionprops
from skimage.morphology import skeletonize

from napari_hitl.core.evaluation.scribbles import sparse_scribbles
from napari_hitl.core.sample import scene as sample
from napari_hitl.core.sample.scene import (
    BAND_NAMES,
    CLASS_COLORS,
    CLASS_NAMES,
    DSM_BAND,
    RGB_BANDS,
    WAVELENGTHS_NM,
    SampleScene,
    make_sample_scene,
)

VEG, GROUND, ROAD, BUILDING, WATER = 1, 2, 3, 4, 5
RED, NIR = 4, 6
CLASSES = (VEG, GROUND, ROAD, BUILDING, WATER)


@pytest.fixture(scope="module")
def scene() -> SampleScene:
    return make_sample_scene((512, 512), seed=0)


@pytest.fixture(scope="module")
def scenes256() -> list[SampleScene]:
    return [make_sample_scene((256, 256), seed=s) for s in (1, 2, 3)]


def _ndvi(bands: np.ndarray) -> np.ndarray:
    red, nir = bands[RED].astype(np.float64), bands[NIR].astype(np.float64)
    return (nir - red) / np.maximum(nir + red, 1e-6)


def _class_mean(values: np.ndarray, gt: np.ndarray) -> dict[int, float]:
    return {c: float(values[gt == c].mean()) for c in CLASSES}


def _height_above_terrain(dsm: np.ndarray) -> np.ndarray:
    """DSM minus a morphological terrain estimate (opening removes objects < 61 px)."""
    dsm = dsm.astype(np.float64)
    return dsm - ndi.grey_opening(dsm, size=(61, 61))


def _hex_rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def _nearest_centroid_accuracy(features: np.ndarray, y: np.ndarray) -> float:
    """Training accuracy of a nearest-centroid classifier on standardised features (N, F)."""
    x = (features - features.mean(0)) / features.std(0)
    centroids = np.stack([x[y == c].mean(0) for c in CLASSES])
    dist = np.stack([((x - m) ** 2).sum(1) for m in centroids], 1)
    pred = np.asarray(CLASSES)[dist.argmin(1)]
    return float((pred == y).mean())


# ---------------------------------------------------------------------------------------------
# API, shapes, determinism


def test_metadata_constants() -> None:
    assert CLASS_NAMES == ("vegetation", "ground", "road", "building", "water")
    assert len(CLASS_COLORS) == 5
    for color in CLASS_COLORS:
        assert len(color) == 7 and color[0] == "#"
        int(color[1:], 16)
    (vr, vg, vb), (gr, gg, gb), (rr, rg, rb), (br, bg, bb), (wr, wg, wb) = map(
        _hex_rgb, CLASS_COLORS
    )
    assert vg > vr and vg > vb  # vegetation green
    assert gr > gg > gb  # ground tan/brown
    assert max(rr, rg, rb) - min(rr, rg, rb) < 30  # road grey
    assert br > bg and br > bb  # building red/orange
    assert wb > wr and wb > wg  # water blue

    assert len(BAND_NAMES) == len(WAVELENGTHS_NM) == 15
    assert BAND_NAMES[:14] == tuple(f"B{i:02d}" for i in range(1, 15))
    assert BAND_NAMES[DSM_BAND] == "DSM" and DSM_BAND == 14
    assert WAVELENGTHS_NM[DSM_BAND] is None
    wl = np.array(WAVELENGTHS_NM[:14], dtype=float)
    assert np.all(np.diff(wl) > 0)
    assert 400 <= wl[0] <= 450 and 2150 <= wl[-1] <= 2350
    assert (wl < 1000).sum() == 8 and (wl > 1000).sum() == 6  # 8 VNIR + 6 SWIR
    r, g, b = (WAVELENGTHS_NM[i] for i in RGB_BANDS)
    assert 620 <= r <= 690 and 520 <= g <= 580 and 450 <= b <= 500
    assert 650 <= WAVELENGTHS_NM[RED] <= 680 and 770 <= WAVELENGTHS_NM[NIR] <= 900


@pytest.mark.parametrize("shape", [(128, 128), (96, 200), (200, 96)])
def test_shapes_dtypes_and_ranges(shape: tuple[int, int]) -> None:
    sc = make_sample_scene(shape, seed=4)
    assert sc.bands.shape == (15, *shape) and sc.bands.dtype == np.float32
    assert sc.ground_truth.shape == shape and sc.ground_truth.dtype == np.uint8
    assert np.isfinite(sc.bands).all()
    assert set(np.unique(sc.ground_truth)) <= set(CLASSES)
    refl = sc.bands[:14]
    assert refl.min() >= 0.0 and refl.max() <= 1.0
    assert refl.mean() > 0.05  # not a black image
    dsm = sc.bands[DSM_BAND]
    assert dsm.min() >= 80 and dsm.max() <= 200
    assert sc.band_names == BAND_NAMES and sc.wavelengths_nm == WAVELENGTHS_NM
    assert sc.units == ("reflectance",) * 14 + ("m",)
    assert sc.rgb_bands == RGB_BANDS
    assert sc.class_names == CLASS_NAMES and sc.class_colors == CLASS_COLORS


@pytest.mark.parametrize("shape", [(16, 16), (17, 40), (40, 17), (64, 64)])
def test_small_shapes_work(shape: tuple[int, int]) -> None:
    for seed in range(5):
        sc = make_sample_scene(shape, seed)
        assert sc.bands.shape == (15, *shape)
        assert np.isfinite(sc.bands).all()
        assert sc.ground_truth.min() >= 1


def test_too_small_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        make_sample_scene((8, 64))


def test_deterministic() -> None:
    a = make_sample_scene((160, 224), seed=7)
    b = make_sample_scene((160, 224), seed=7)
    assert np.array_equal(a.bands, b.bands)
    assert np.array_equal(a.ground_truth, b.ground_truth)


def test_seeds_differ() -> None:
    a = make_sample_scene((160, 224), seed=7)
    b = make_sample_scene((160, 224), seed=8)
    assert (a.ground_truth != b.ground_truth).mean() > 0.2
    assert np.abs(a.bands - b.bands).mean() > 0.01


def test_scene_is_frozen(scene: SampleScene) -> None:
    with pytest.raises(AttributeError):
        scene.bands = np.zeros(1)  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# layout


@pytest.mark.parametrize("shape", [(128, 128), (128, 256), (256, 128), (512, 512)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_class_present_with_at_least_2_percent(shape: tuple[int, int], seed: int) -> None:
    gt = make_sample_scene(shape, seed).ground_truth
    frac = np.bincount(gt.ravel(), minlength=6) / gt.size
    assert frac[0] == 0
    assert frac[1:].min() >= 0.02, frac


def test_roads_are_long_and_thin(scene: SampleScene) -> None:
    road = scene.ground_truth == ROAD
    h, w = road.shape
    skeleton_length = skeletonize(road).sum()
    mean_width = road.sum() / skeleton_length
    assert 2.5 <= mean_width <= 8, mean_width
    assert skeleton_length >= 2 * max(h, w)
    # a connected network that crosses the image
    lab, _ = ndi.label(road, structure=np.ones((3, 3)))
    biggest = np.bincount(lab.ravel())[1:].argmax() + 1
    rows, cols = np.nonzero(lab == biggest)
    assert np.ptp(rows) >= 0.8 * h and np.ptp(cols) >= 0.8 * w
    edges = [road[0].any(), road[-1].any(), road[:, 0].any(), road[:, -1].any()]
    assert sum(edges) >= 3


def test_buildings_are_rectangles_next_to_roads(scene: SampleScene) -> None:
    gt = scene.ground_truth
    dist_road = ndi.distance_transform_edt(gt != ROAD)
    lab, n = ndi.label(gt == BUILDING)
    assert n >= 40
    nearest_road = ndi.minimum(dist_road, lab, np.arange(1, n + 1))
    assert nearest_road.min() > 2  # never on or touching a road
    assert nearest_road.max() <= 40  # but always along one
    props = [p for p in regionprops(lab) if p.area >= 30]
    solidity = np.array([p.solidity for p in props])
    assert np.median(solidity) > 0.9 and (solidity > 0.8).mean() > 0.9
    areas = np.array([p.area for p in props])
    assert areas.max() > 3 * np.median(areas)  # various sizes


def test_water_is_a_wide_river(scenes256: list[SampleScene]) -> None:
    for sc in scenes256:
        water = sc.ground_truth == WATER
        # bridges (roads ≤ 7 px) cut the river; close them before measuring it
        closed = ndi.binary_closing(water, structure=np.ones((11, 11)), border_value=1) | water
        lab, _ = ndi.label(closed)
        biggest = lab == np.bincount(lab.ravel())[1:].argmax() + 1
        rows, cols = np.nonzero(biggest)
        assert max(np.ptp(rows), np.ptp(cols)) >= 0.95 * 255
        mean_width = biggest.sum() / skeletonize(biggest).sum()
        assert mean_width >= 8


def test_vegetation_forms_patches(scenes256: list[SampleScene]) -> None:
    for sc in scenes256:
        veg = sc.ground_truth == VEG
        lab, _ = ndi.label(veg)
        sizes = np.bincount(lab.ravel())[1:]
        assert sizes[sizes >= 100].sum() >= 0.9 * veg.sum()  # no salt-and-pepper
        assert sizes.max() >= 0.02 * veg.size


# ---------------------------------------------------------------------------------------------
# spectra


def test_vegetation_has_high_ndvi(scene: SampleScene) -> None:
    ndvi = _class_mean(_ndvi(scene.bands), scene.ground_truth)
    assert ndvi[VEG] > 0.5
    assert all(ndvi[VEG] > ndvi[c] + 0.2 for c in CLASSES if c != VEG), ndvi
    assert ndvi[WATER] < 0


def test_vegetation_red_edge(scene: SampleScene) -> None:
    mean = scene.bands[:14, scene.ground_truth == VEG].mean(1)
    assert mean[RED] < mean[2]  # red below green
    assert mean[5] > 2 * mean[RED]  # rise at the red edge
    assert mean[NIR] > 4 * mean[RED]  # NIR ≫ red


def test_water_is_darkest_in_nir_and_swir(scene: SampleScene) -> None:
    gt = scene.ground_truth
    means = {c: scene.bands[:14, gt == c].mean(1) for c in CLASSES}
    for band in range(NIR, 14):
        assert all(means[WATER][band] < means[c][band] for c in CLASSES if c != WATER), band
    assert means[WATER][NIR] < 0.05
    assert means[WATER][8:].max() < means[WATER][:4].min()  # darker in SWIR than visible


def test_road_spectrum_is_flat_and_dark(scene: SampleScene) -> None:
    gt = scene.ground_truth
    interior = ndi.binary_erosion(gt == ROAD)  # away from mixed edge pixels
    road = scene.bands[:14, interior].mean(1)
    assert road.max() < 0.25
    assert road.max() / road.min() < 1.8
    ground = scene.bands[:14, gt == GROUND].mean(1)
    assert road.mean() < ground.mean()


def test_ground_rises_slowly_with_wavelength(scene: SampleScene) -> None:
    ground = scene.bands[:14, scene.ground_truth == GROUND].mean(1)
    wl = np.array(WAVELENGTHS_NM[:14], dtype=float)
    assert np.corrcoef(wl[1:11], ground[1:11])[0, 1] > 0.8
    assert ground[9] > 1.8 * ground[1]  # SWIR 1.6 µm much brighter than blue
    assert ground[5] - ground[4] < 0.1  # but no vegetation-like red edge


def test_building_roofs_vary(scene: SampleScene) -> None:
    gt = scene.ground_truth
    lab, n = ndi.label(gt == BUILDING)
    brightness = scene.bands[:14].mean(0)
    per_building = ndi.median(brightness, lab, np.arange(1, n + 1))
    assert per_building.max() > 2 * per_building.min()
    assert per_building.std() / per_building.mean() > 0.25
    # red tiles exist: some roofs are much redder than blue
    ratio = ndi.median(
        scene.bands[RED] / np.maximum(scene.bands[1], 1e-3), lab, np.arange(1, n + 1)
    )
    assert (ratio > 2.5).sum() >= 3
    assert (ratio < 1.5).sum() >= 3
    # on average roofs are brighter than roads
    assert brightness[gt == BUILDING].mean() > brightness[gt == ROAD].mean()


def test_within_class_variation_and_pixel_noise(scene: SampleScene) -> None:
    gt = scene.ground_truth
    nir = scene.bands[NIR].astype(np.float64)
    for c in (VEG, GROUND, ROAD, BUILDING):
        interior = ndi.binary_erosion(gt == c, iterations=2)
        # per-pixel noise: residual from the 3×3 mean, relative to the level
        residual = nir - ndi.uniform_filter(nir, 3)
        rel_noise = residual[interior].std() / nir[interior].mean()
        assert 0.01 < rel_noise < 0.08, (c, rel_noise)
        # smooth variation: spread of 16×16 block means inside the class
        blocks = ndi.uniform_filter(nir, 16)[ndi.binary_erosion(gt == c, iterations=8)]
        if blocks.size > 100:
            assert blocks.std() / blocks.mean() > 0.03, c


def test_illumination_gradient(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same scene rendered without the illumination field differs by a smooth ramp."""
    shape, seed = (256, 256), 3
    lit = make_sample_scene(shape, seed)
    original = sample._illumination

    def flat(rng: np.random.Generator, shp: tuple[int, int]) -> np.ndarray:
        return np.ones_like(original(rng, shp))  # same random draws, no effect

    monkeypatch.setattr(sample, "_illumination", flat)
    unlit = make_sample_scene(shape, seed)
    assert np.array_equal(lit.ground_truth, unlit.ground_truth)
    assert np.array_equal(lit.bands[DSM_BAND], unlit.bands[DSM_BAND])

    valid = unlit.bands[NIR] > 0.1
    ratio = np.where(valid, lit.bands[NIR] / np.maximum(unlit.bands[NIR], 1e-3), np.nan)
    b = 16
    blocks = np.nanmedian(ratio.reshape(shape[0] // b, b, shape[1] // b, b), axis=(1, 3))
    yy, xx = np.indices(blocks.shape) / blocks.shape[0]
    ok = np.isfinite(blocks)
    design = np.stack([np.ones(ok.sum()), yy[ok], xx[ok]], 1)
    coef, *_ = np.linalg.lstsq(design, blocks[ok], rcond=None)
    fitted = design @ coef
    r2 = 1 - ((blocks[ok] - fitted) ** 2).sum() / ((blocks[ok] - blocks[ok].mean()) ** 2).sum()
    assert 0.1 < np.hypot(coef[1], coef[2]) < 0.4  # ±5..20 % across the image
    assert r2 > 0.7  # mostly a plane
    assert blocks[ok].min() > 0.85 and blocks[ok].max() < 1.2


def test_classes_learnable_but_not_trivial(scene: SampleScene) -> None:
    x = scene.bands.reshape(15, -1).T.astype(np.float64)
    y = scene.ground_truth.ravel()
    acc = _nearest_centroid_accuracy(x, y)
    assert 0.75 < acc < 0.99, acc
    # no single band separates the classes
    for band in range(15):
        single = _nearest_centroid_accuracy(x[:, band : band + 1], y)
        assert single < 0.85, (band, single)


# ---------------------------------------------------------------------------------------------
# DSM


def test_dsm_terrain_is_smooth_with_tens_of_metres_relief(scene: SampleScene) -> None:
    dsm = scene.bands[DSM_BAND].astype(np.float64)
    gt = scene.ground_truth
    terrain = ndi.grey_opening(dsm, size=(61, 61))
    assert 10 <= np.ptp(terrain) <= 80
    assert 90 <= np.median(dsm) <= 170
    # bare ground follows the smooth terrain: tiny pixel-to-pixel steps
    ground = ndi.binary_erosion(gt == GROUND, iterations=2)
    step = np.abs(np.diff(dsm, axis=1))[ground[:, 1:] & ground[:, :-1]]
    assert np.median(step) < 0.3


def test_buildings_stand_above_terrain(scene: SampleScene) -> None:
    gt = scene.ground_truth
    hag = _height_above_terrain(scene.bands[DSM_BAND])
    mean = _class_mean(hag, gt)
    assert all(mean[BUILDING] > mean[c] + 4 for c in CLASSES if c != BUILDING), mean
    lab, n = ndi.label(gt == BUILDING)
    per_building = ndi.median(hag, lab, np.arange(1, n + 1))
    assert np.mean((per_building > 2.5) & (per_building < 30)) > 0.9
    # flat-ish roofs: small spread inside a roof compared with the building height
    inner, n_inner = ndi.label(ndi.binary_erosion(gt == BUILDING, iterations=2))
    spread = ndi.standard_deviation(hag, inner, np.arange(1, n_inner + 1))
    assert np.median(spread) < 1.0


def test_vegetation_partly_raised(scene: SampleScene) -> None:
    gt = scene.ground_truth
    hag = _height_above_terrain(scene.bands[DSM_BAND])
    veg = hag[gt == VEG]
    assert np.percentile(veg, 90) > 4  # trees
    assert (veg < 1).mean() > 0.15  # fields and grass are not raised


def test_water_lies_below_its_surroundings(scenes256: list[SampleScene]) -> None:
    for sc in scenes256:
        gt = sc.ground_truth
        dsm = sc.bands[DSM_BAND].astype(np.float64)
        water = gt == WATER
        bank = gt == GROUND
        num = ndi.uniform_filter(np.where(bank, dsm, 0.0), 41)
        den = ndi.uniform_filter(bank.astype(np.float64), 41)
        near = water & (den > 0.05)
        local_ground = num[near] / den[near]
        assert (dsm[near] - local_ground).mean() < -0.5
        inner = ndi.binary_erosion(water, iterations=3)
        assert np.std(dsm[inner] - ndi.uniform_filter(dsm, 5)[inner]) < 0.3  # flat surface


# ---------------------------------------------------------------------------------------------
# scribbles


@pytest.mark.parametrize("fraction", [0.005, 0.01, 0.03])
def test_scribbles_fraction(scene: SampleScene, fraction: float) -> None:
    s = sparse_scribbles(scene.ground_truth, fraction=fraction, seed=1)
    assert s.shape == scene.ground_truth.shape and s.dtype == np.uint8
    got = (s > 0).mean()
    assert fraction / 2 <= got <= 2 * fraction, got


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scribbles_agree_with_ground_truth_away_from_boundaries(
    scenes256: list[SampleScene], seed: int
) -> None:
    gt = scenes256[seed].ground_truth
    s = sparse_scribbles(gt, fraction=0.02, seed=seed)
    labeled = s > 0
    assert np.array_equal(s[labeled], gt[labeled])
    for c in CLASSES:
        near_other = ndi.binary_dilation(gt != c, structure=np.ones((5, 5)))
        assert not (near_other & (s == c)).any(), c
    assert set(np.unique(s[labeled])) == set(np.unique(gt))  # every class gets some


def test_scribbles_are_short_strokes(scene: SampleScene) -> None:
    s = sparse_scribbles(scene.ground_truth, fraction=0.01, seed=0)
    lab, n = ndi.label(s > 0, structure=np.ones((3, 3)))
    assert n >= 10
    sizes = np.bincount(lab.ravel())[1:]
    assert np.median(sizes) < 0.01 * s.size  # many small strokes, not a few big blobs
    half_width = ndi.distance_transform_edt(s > 0)[s > 0]
    assert np.percentile(half_width, 95) <= 3  # a few px wide (overlaps aside)
    elongation = [p.axis_major_length / max(p.axis_minor_length, 1) for p in regionprops(lab)]
    assert np.median(elongation) > 2  # strokes, not dabs


def test_scribbles_deterministic_and_seeded(scene: SampleScene) -> None:
    a = sparse_scribbles(scene.ground_truth, 0.01, seed=5)
    b = sparse_scribbles(scene.ground_truth, 0.01, seed=5)
    c = sparse_scribbles(scene.ground_truth, 0.01, seed=6)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_scribbles_edge_cases() -> None:
    gt = np.zeros((60, 60), np.uint8)
    gt[:, :30] = 2
    gt[:, 30:] = 7
    gt[10, :] = 3  # a 1-px line: no interior, cannot be labeled safely
    gt[40:, 40:] = 0  # 0 is "no class"
    s = sparse_scribbles(gt, fraction=0.05, seed=0)
    assert set(np.unique(s)) == {0, 2, 7}
    assert not (s[gt == 0]).any()
    assert np.array_equal(s[s > 0], gt[s > 0])
    assert not sparse_scribbles(np.full((30, 30), 0, np.uint8)).any()
    with pytest.raises(ValueError, match="fraction"):
        sparse_scribbles(gt, fraction=0)
    with pytest.raises(ValueError, match="2-D"):
        sparse_scribbles(gt[None])
