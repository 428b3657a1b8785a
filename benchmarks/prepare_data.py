"""Convert the shared real data sets into image/mask folders that ``napari-hitl simulate`` reads.

Usage (from the repository root)::

    python benchmarks/prepare_data.py [--data DIR] [--cache DIR] [--sets siftflow,dsb2018,...]

For every set this writes ``CACHE/<set>/images/*`` and ``CACHE/<set>/masks/*`` (same file
stems; masks are single-channel integers with 0 = no ground truth and 1..K = classes) and prints
a one-line summary.  A set whose folder already holds a ``prepared.json`` written by the same
version of this script is skipped (``--force`` rebuilds it).  Nothing is written into the
repository: the default cache is ``~/.cache/napari-hitl/bench-data``.

See ``benchmarks/README.md`` for what each set's preparation does and its caveats.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data"  # ../shared/data relative to the repository
DEFAULT_CACHE = Path("~/.cache/napari-hitl/bench-data").expanduser()
SETS = ("siftflow", "dsb2018", "eolearn", "sen1floods", "houston", "cloud38", "photos8")
VERSION = 1  # bump when a set's output changes, so cached sets are rebuilt


# --------------------------------------------------------------------------- writers


def write_png(path: Path, arr: np.ndarray) -> None:
    """Write a 2-D (mask) or ``H, W, 3`` uint8/uint16 array as a PNG."""
    import imageio.v3 as iio

    iio.imwrite(path, arr)


def write_tiff_band_first(path: Path, arr: np.ndarray, band_names: list[str] | None) -> None:
    """Write a ``C, H, W`` array as a band-first TIFF whose metadata says the axes are CYX."""
    import tifffile

    meta: dict[str, Any] = {"axes": "CYX"}
    if band_names:
        meta["band_names"] = band_names
    tifffile.imwrite(path, arr, photometric="minisblack", metadata=meta)


def grid_tiles(h: int, w: int, rows: int, cols: int) -> Iterator[tuple[int, int, slice, slice]]:
    """Non-overlapping ``rows x cols`` tiles covering an ``h x w`` image (sizes differ by ≤ 1)."""
    ys = np.linspace(0, h, rows + 1).round().astype(int)
    xs = np.linspace(0, w, cols + 1).round().astype(int)
    for i in range(rows):
        for j in range(cols):
            yield i, j, slice(ys[i], ys[i + 1]), slice(xs[j], xs[j + 1])


# --------------------------------------------------------------------------- the sets


# SIFT Flow's 33 labels (1-based, alphabetical) → the 8 categories of the Stanford Background
# set (1 sky, 2 tree, 3 road, 4 grass, 5 water, 6 building, 7 mountain, 8 foreground object),
# the natural-photo set of the seed paper's Table 1; 0: no Stanford category (desert, sand).
PHOTOS8_CLASSES = ("sky", "tree", "road", "grass", "water", "building", "mountain", "foreground")
PHOTOS8_FROM_SIFTFLOW = {
    "sky": ("sky", "sun", "moon"),
    "tree": ("tree", "plant"),
    "road": ("road", "sidewalk", "crosswalk"),
    "grass": ("grass", "field"),
    "water": ("sea", "river"),
    "building": ("building", "awning", "balcony", "door", "window", "staircase"),
    "mountain": ("mountain", "rock"),
    "foreground": (
        "bird", "boat", "bridge", "bus", "car", "cow", "fence", "person", "pole", "sign",
        "streetlight",
    ),
}  # fmt: skip
SIFTFLOW_CLASSES = [
    "awning", "balcony", "bird", "boat", "bridge", "building", "bus", "car", "cow", "crosswalk",
    "desert", "door", "fence", "field", "grass", "moon", "mountain", "person", "plant", "pole",
    "river", "road", "rock", "sand", "sea", "sidewalk", "sign", "sky", "staircase",
    "streetlight", "sun", "tree", "window",
]  # fmt: skip


def photos8_lut() -> np.ndarray:
    """Lookup table SIFT Flow label (0..33) → Stanford Background category (0..8)."""
    lut = np.zeros(len(SIFTFLOW_CLASSES) + 1, np.uint8)
    for k, name in enumerate(PHOTOS8_CLASSES, start=1):
        for src in PHOTOS8_FROM_SIFTFLOW[name]:
            lut[SIFTFLOW_CLASSES.index(src) + 1] = k
    return lut


def prepare_photos8(src: Path, images: Path, masks: Path) -> None:
    """SIFT Flow subset with its labels merged into the Stanford Background set's 8 categories
    (:data:`PHOTOS8_FROM_SIFTFLOW`): a stand-in for the seed paper's outdoor-photo set."""
    prepare_siftflow(src, images, masks, photos8_lut())


def prepare_siftflow(src: Path, images: Path, masks: Path, lut: np.ndarray | None = None) -> None:
    """SIFT Flow subset: copy the JPEGs, turn the ``.regions.txt`` matrices into uint8 PNGs
    (through ``lut`` when given).

    The stems get a rank prefix (``000_coast_arnat59``) that interleaves the eight scene
    categories round-robin, so that ``simulate --max-images N`` (which takes the first N stems in
    sorted order) gets a category-balanced subset instead of only coast/forest/highway.
    """
    ids = [s.strip() for s in (src / "subset_ids.txt").read_text().split() if s.strip()]
    by_cat: dict[str, list[str]] = {}
    for i in sorted(ids):
        by_cat.setdefault(i.split("_", 1)[0], []).append(i)
    order: list[str] = []
    queues = [list(v) for _, v in sorted(by_cat.items())]
    while any(queues):
        for q in queues:
            if q:
                order.append(q.pop(0))
    for rank, sid in enumerate(order):
        stem = f"{rank:03d}_{sid}"
        lab = np.loadtxt(src / "labels" / f"{sid}.regions.txt", dtype=np.int64)
        if lab.min() < 0 or lab.max() > 255:
            raise ValueError(f"{sid}: label values {lab.min()}..{lab.max()} outside 0..255")
        shutil.copyfile(src / "images" / f"{sid}.jpg", images / f"{stem}.jpg")
        write_png(masks / f"{stem}.png", (lut[lab] if lut is not None else lab).astype(np.uint8))


def _rle_decode(rle: str, h: int, w: int) -> np.ndarray:
    """Decode a Kaggle DSB-2018 run-length string (1-based starts, column-major) to ``h, w``."""
    flat = np.zeros(h * w, bool)
    nums = np.asarray(rle.split(), dtype=np.int64)
    for start, length in zip(nums[0::2], nums[1::2], strict=True):
        flat[start - 1 : start - 1 + length] = True
    return flat.reshape(w, h).T


def prepare_dsb2018(src: Path, images: Path, masks: Path) -> None:
    """DSB 2018 stage-1 test: RGB images (alpha dropped); masks 1 = background, 2 = nucleus.

    The nucleus union is decoded from ``stage1_solution.csv``; where the CSV is missing, the
    per-nucleus PNGs are OR-ed instead (the data README says both give the same union).
    """
    import imageio.v3 as iio

    csv_path = src / "stage1_solution.csv"
    fg: dict[str, np.ndarray] = {}
    if csv_path.exists():
        with csv_path.open(newline="") as f:
            for row in csv.DictReader(f):
                h, w = int(row["Height"]), int(row["Width"])
                m = fg.setdefault(row["ImageId"], np.zeros((h, w), bool))
                m |= _rle_decode(row["EncodedPixels"], h, w)
    for folder in sorted(p for p in (src / "stage1_test").iterdir() if p.is_dir()):
        iid = folder.name
        img = np.asarray(iio.imread(folder / "images" / f"{iid}.png"))
        if img.ndim == 2:
            img = np.stack([img] * 3, axis=-1)
        img = img[..., :3]
        if iid in fg:
            nuc = fg[iid]
        else:
            nuc = np.zeros(img.shape[:2], bool)
            for mp in sorted((folder / "masks").glob("*.png")):
                nuc |= np.asarray(iio.imread(mp)) > 0
        if nuc.shape != img.shape[:2]:
            raise ValueError(f"{iid}: mask {nuc.shape} != image {img.shape[:2]}")
        write_png(images / f"{iid}.png", np.ascontiguousarray(img))
        write_png(masks / f"{iid}.png", np.where(nuc, 2, 1).astype(np.uint8))


# Sentinel-2 L1C band order of both sources: B01..B08, B8A, B09..B12.
S2_BANDS = [*(f"B{i:02d}" for i in range(1, 9)), "B8A", "B09", "B10", "B11", "B12"]


def prepare_eolearn(src: Path, images: Path, masks: Path) -> None:
    """eo-learn Slovenia: 5 dates x 2x2 tiles of (13 S2 bands + DEM) → 20 band-first TIFFs.

    Masks are the LULC ids (0 = no data).  Every tile position appears once per date with the
    same mask, so a test tile shares its geography (and labels) with pool tiles of other dates.
    """
    scenes = np.load(src / "REFERENCE_SCENES.npy")  # (T, H, W, 13)
    dem = np.load(src / "DEM.npy")[..., 0].astype(np.float32)
    lulc = np.load(src / "LULC.npy")[..., 0]
    h, w = lulc.shape
    for t in range(scenes.shape[0]):
        cube = np.concatenate([np.moveaxis(scenes[t], -1, 0).astype(np.float32), dem[None]], axis=0)
        for i, j, ys, xs in grid_tiles(h, w, 2, 2):
            stem = f"date{t}_r{i}c{j}"
            write_tiff_band_first(
                images / f"{stem}.tif", np.ascontiguousarray(cube[:, ys, xs]), [*S2_BANDS, "DEM"]
            )
            write_png(masks / f"{stem}.png", lulc[ys, xs].astype(np.uint8))


def prepare_sen1floods(src: Path, images: Path, masks: Path) -> None:
    """Sen1Floods11 chip: 13 S2 + 2 S1 bands as float32, 4x4 tiles of 128x128 → 16 images.

    Labels −1 (no data) → 0, 0 (not water) → 1, 1 (water) → 2.
    """
    import tifffile

    stem = "Spain_7370579"
    s2 = tifffile.imread(src / f"{stem}_S2Hand.tif").astype(np.float32)
    s1 = tifffile.imread(src / f"{stem}_S1Hand.tif").astype(np.float32)
    lab = tifffile.imread(src / f"{stem}_LabelHand.tif").astype(np.int64)
    cube = np.concatenate([s2, s1], axis=0)
    if not np.isfinite(cube).all():
        raise ValueError("Sen1Floods11 bands hold NaN/inf; handle them before tiling")
    mask = np.select([lab == 0, lab == 1], [1, 2], 0).astype(np.uint8)
    h, w = mask.shape
    for i, j, ys, xs in grid_tiles(h, w, 4, 4):
        tile = f"{stem}_r{i}c{j}"
        write_tiff_band_first(
            images / f"{tile}.tif", np.ascontiguousarray(cube[:, ys, xs]), [*S2_BANDS, "VV", "VH"]
        )
        write_png(masks / f"{tile}.png", mask[ys, xs])


def prepare_houston(src: Path, images: Path, masks: Path) -> None:
    """Houston (DFC2018) crop: 48 hyperspectral bands (128², repeated 4× to the RGB grid) + RGB
    at 512², cut 4x4 into 16 tiles of 128². Labels 1..12 as in the file, 0 = no ground truth."""
    from scipy.io import loadmat

    mat = loadmat(src / "houston_dataset.mat")
    hs = np.moveaxis(mat["hyprImg"].astype(np.float32), -1, 0)  # (48, 128, 128)
    hs = np.repeat(np.repeat(hs, 4, axis=1), 4, axis=2)
    rgb = np.moveaxis(mat["rgbImg"].astype(np.float32), -1, 0)
    cube = np.concatenate([hs, rgb], axis=0)
    labels = mat["clasLabs"].astype(np.uint8)
    names = [f"HS{i:02d}" for i in range(hs.shape[0])] + ["red", "green", "blue"]
    h, w = labels.shape
    for i, j, ys, xs in grid_tiles(h, w, 4, 4):
        stem = f"houston_r{i}c{j}"
        write_tiff_band_first(images / f"{stem}.tif", np.ascontiguousarray(cube[:, ys, xs]), names)
        write_png(masks / f"{stem}.png", labels[ys, xs])


def prepare_cloud38(src: Path, images: Path, masks: Path) -> None:
    """38-Cloud patch: Landsat 8 red, green, blue, NIR at 384², cut 3x3 into 9 tiles of 128².

    Mask 0 (clear) → 1, 255 (cloud) → 2; every pixel has ground truth.
    """
    import tifffile

    tail = "patch_192_10_by_12_LC08_L1TP_002053_20160520_20170324_01_T1.TIF"
    names = ["red", "green", "blue", "nir"]
    cube = np.stack([tifffile.imread(src / f"{n}_{tail}").astype(np.float32) for n in names])
    gt = tifffile.imread(src / f"gt_{tail}")
    mask = np.where(gt > 0, 2, 1).astype(np.uint8)
    h, w = mask.shape
    for i, j, ys, xs in grid_tiles(h, w, 3, 3):
        stem = f"cloud_r{i}c{j}"
        write_tiff_band_first(images / f"{stem}.tif", np.ascontiguousarray(cube[:, ys, xs]), names)
        write_png(masks / f"{stem}.png", mask[ys, xs])


PREPARERS: dict[str, tuple[str, Callable[[Path, Path, Path], None]]] = {
    "houston": ("houston2018_crop", prepare_houston),
    "cloud38": ("38cloud_sample", prepare_cloud38),
    "siftflow": ("siftflow_subset", prepare_siftflow),
    "photos8": ("siftflow_subset", prepare_photos8),
    "dsb2018": ("dsb2018_stage1_test", prepare_dsb2018),
    "eolearn": ("eolearn_slovenia_s2_dem_lulc", prepare_eolearn),
    "sen1floods": ("sen1floods11_sample", prepare_sen1floods),
}


# --------------------------------------------------------------------------- summary


def summarize(out: Path) -> dict[str, Any]:
    """Count images, shapes, band counts, dtypes and pixels per class of a prepared set."""
    from napari_hitl.core.io.rasters import read_mask, read_raster

    shapes: Counter[str] = Counter()
    bands: set[int] = set()
    dtypes: set[str] = set()
    counts: Counter[int] = Counter()
    n = 0
    for img in sorted((out / "images").iterdir()):
        mask = next((out / "masks").glob(f"{img.stem}.*"))
        r = read_raster(img)
        m = read_mask(mask)
        if m.shape != r.spatial_shape:
            raise ValueError(f"{img.name}: mask {m.shape} != image {r.spatial_shape}")
        n += 1
        shapes[f"{r.spatial_shape[0]}x{r.spatial_shape[1]}"] += 1
        bands.add(r.n_bands)
        dtypes.add(str(r.dtype))
        vals, cnt = np.unique(m, return_counts=True)
        counts.update({int(v): int(c) for v, c in zip(vals, cnt, strict=True)})
    return {
        "n_images": n,
        "shapes": dict(shapes.most_common()),
        "bands": sorted(bands),
        "dtypes": sorted(dtypes),
        "classes": sorted(c for c in counts if c > 0),
        "pixels_per_value": {str(k): counts[k] for k in sorted(counts)},
    }


def summary_line(name: str, s: dict[str, Any]) -> str:
    """The one-line summary printed per set."""
    shapes = ", ".join(f"{k} ({v})" for k, v in s["shapes"].items())
    px = " ".join(f"{k}:{v}" for k, v in s["pixels_per_value"].items())
    return (
        f"{name}: {s['n_images']} images; shape HxW {shapes}; bands {s['bands']} "
        f"{'/'.join(s['dtypes'])}; {len(s['classes'])} classes {s['classes']}; "
        f"pixels per mask value (0 = no ground truth) {px}"
    )


def prepare(name: str, data: Path, cache: Path, force: bool = False) -> dict[str, Any]:
    """Prepare one set unless it is already done; return its summary."""
    folder, fn = PREPARERS[name]
    out = cache / name
    marker = out / "prepared.json"
    if marker.exists() and not force:
        info = json.loads(marker.read_text())
        if info.get("version") == VERSION:
            return info["summary"]
    src = data / folder
    if not src.is_dir():
        raise FileNotFoundError(f"{src} not found (pass --data)")
    if out.exists():
        shutil.rmtree(out)
    (out / "images").mkdir(parents=True)
    (out / "masks").mkdir(parents=True)
    fn(src, out / "images", out / "masks")
    summary = summarize(out)
    marker.write_text(
        json.dumps({"version": VERSION, "source": str(src), "summary": summary}, indent=2)
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"default {DEFAULT_DATA}")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"default {DEFAULT_CACHE}")
    ap.add_argument(
        "--sets", default=",".join(SETS), help="comma-separated subset of " + ",".join(SETS)
    )
    ap.add_argument("--force", action="store_true", help="rebuild sets that are already done")
    args = ap.parse_args(argv)
    names = [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = sorted(set(names) - set(SETS))
    if unknown:
        ap.error(f"unknown sets {unknown}; choose from {list(SETS)}")
    for name in names:
        s = prepare(name, args.data.expanduser().resolve(), args.cache.expanduser(), args.force)
        print(summary_line(name, s), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
