"""Small helpers for tests: synthetic GeoTIFFs, a small labeled TIFF and a byte-exact snapshot of
a folder."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import tifffile

from napari_hitl.core.io.geo import gdal_metadata_xml

# A projected CRS (UTM 33N, EPSG:32633) with pixel-is-area georeferencing, as GDAL writes it.
UTM_GEOKEYS = (1, 1, 0, 4, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32633, 3076, 0, 1, 9001)
UTM_TIEPOINT = (0.0, 0.0, 0.0, 465181.05, 5080254.63, 0.0)
UTM_SCALE = (10.0, 10.0, 0.0)


def write_geotiff(
    path: Path,
    data: np.ndarray,
    band_names: list[str],
    nodata: float | None = None,
    *,
    geokeys: tuple[int, ...] = UTM_GEOKEYS,
    tiepoint: tuple[float, ...] = UTM_TIEPOINT,
    scale: tuple[float, ...] = UTM_SCALE,
    double_params: tuple[float, ...] = (),
    ascii_params: str = "",
    gdal_items: tuple[dict, ...] | list[dict] = (),
) -> Path:
    """A band-first GeoTIFF as GDAL writes it: band names (and further GDAL metadata items),
    the GeoTIFF tags given (default EPSG:32633, pixel-is-area), optional nodata."""
    extratags = [
        (33550, "d", 3, scale, True),
        (33922, "d", 6, tiepoint, True),
        (34735, "H", len(geokeys), geokeys, True),
        (42112, "s", 0, gdal_metadata_xml(band_names, gdal_items), True),
    ]
    if double_params:
        extratags.append((34736, "d", len(double_params), double_params, True))
    if ascii_params:
        extratags.append((34737, "s", 0, ascii_params, True))
    if nodata is not None:
        extratags.append((42113, "s", 0, str(nodata), True))
    tifffile.imwrite(
        path,
        data,
        planarconfig="separate",
        photometric="minisblack",
        extratags=extratags,
        metadata=None,
    )
    return path


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path → sha256 of every file under ``folder`` (the exact state of a store)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def write_labeled_tiff(folder: Path, rng: np.random.Generator) -> tuple[Path, Path]:
    """``folder/a.tif`` (3 bands of 64 × 64, uint16) and ``folder/mask.tif``: 100 pixels of
    class 1 and 100 of class 2 (200 labeled pixels in all)."""
    image = folder / "a.tif"
    tifffile.imwrite(
        image,
        rng.integers(0, 1000, (3, 64, 64)).astype(np.uint16),
        photometric="minisblack",
        planarconfig="separate",
    )
    mask = np.zeros((64, 64), np.uint8)
    mask[:10, :10] = 1
    mask[20:30, 20:30] = 2
    tifffile.imwrite(folder / "mask.tif", mask)
    return image, folder / "mask.tif"


def scribbled_scenes(drop_class: int | None = None):
    """Two 192² sample scenes: the first with 3 % scribbles as a training image (without the
    strokes of ``drop_class``), the second for testing.

    Returns ``norm, image, test_x, test_truth, class_names`` (classes 1–5).
    """
    from napari_hitl.core.evaluation.scribbles import sparse_scribbles
    from napari_hitl.core.io.bands import robust_stats
    from napari_hitl.core.learning.data import make_labeled_image, normalization_from_stats
    from napari_hitl.core.sample.scene import make_sample_scene
    from napari_hitl.core.store import PROVENANCE_HUMAN

    train, test = make_sample_scene((192, 192), 3), make_sample_scene((192, 192), 4)
    norm = normalization_from_stats(
        list(train.band_names), [[robust_stats(b) for b in train.bands]]
    )
    scrib = sparse_scribbles(train.ground_truth, 0.03, seed=0)
    if drop_class is not None:
        scrib[scrib == drop_class] = 0
    image = make_labeled_image(
        "train",
        norm.apply(train.bands),
        scrib,
        np.where(scrib > 0, PROVENANCE_HUMAN, 0),
        [1, 2, 3, 4, 5],
        0.5,
    )
    return norm, image, norm.apply(test.bands), test.ground_truth, list(train.class_names)
