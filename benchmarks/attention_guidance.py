"""Does attention guidance fix a co-occurrence bias? A synthetic "boats on water" benchmark.

Usage (from the repository root; results in docs/explain.md, "Does guidance help?")::

    .venv/bin/python -u benchmarks/attention_guidance.py          # the documented run, ~10 min
    .venv/bin/python -u benchmarks/attention_guidance.py --quick  # smoke test, < 60 s
    .venv/bin/python -u benchmarks/attention_guidance.py --layer enc0 --seeds 0,1,2 \
        --steps 30 --rounds 1 --negatives felzenszwalb,ideal --no-figures \
        --out benchmarks/results/attention/enc0

The data (4 bands, 128 × 128, noise N(0.5, 0.15) in every band, three items per image):

- band ``object``: a boat (a 10-14 px square) is ``--amp`` (0.3) brighter than its surroundings;
- band ``water``: +0.6 on water. In the training images every boat lies in a pond (a disk of
  water ``--ring`` px wider than the boat, with the boat as a dry hole in it), and each image
  holds two such boats and one pond without a boat. "Dry hole in water" is thus a perfect, and
  much stronger, cue for "boat" than the boat's own weak signal;
- bands ``noise1``, ``noise2``: noise only.

Training labels are sparse (15 % of the boat pixels, 2 % of the rest, water included). The
*debiased* test images break the co-occurrence: each holds a boat on land (no water), an *island*
(a dry hole in a pond, without a boat) and a pond. A held-out *in-distribution* set (boats in
ponds, as in training) measures where Grad-CAM looks and whether guidance costs accuracy there.

Per seed: train a U-Net (``--train-steps``), then, as a user would in the GUI, on the first
``--guide-images`` training images put a positive click at each boat's centre and a negative click
on the pond where the Grad-CAM of the boat is strongest; the negative region is the CAM
superpixel under it (:func:`~napari_hitl.core.explain.steering.negative_region`, ``--negatives``),
and the window around each boat is the GUI's. Fine-tune with
:func:`~napari_hitl.core.explain.steering.guide_job` (defaults: w_g 0.75, w_c 0.25, lr 1e-4)
and, as a control, with the same steps and w_g = 0 (classification
loss only), which separates the guidance from the extra training. Variants:
``guided-N`` / ``control-N`` for each ``--steps`` N; ``guided-Nx2`` a second click round (the
user adds a negative click where the guided CAM now is); ``guided-N-slic`` and
``guided-N-ideal`` other negative regions (SLIC superpixels; the pond itself, as if painted).
Measured before and after:

- Grad-CAM of class boat over each boat's box grown by 2 px: the share of the map's mass inside the
  boat, in the water and on land, and its unnormalised mass relative to before (fading);
- occlusion attribution over the boats: the share of the evidence that the ``water`` band gives;
- on the clicked boats: the CAM's distance to the click and share in the negative regions;
- test boat IoU and mIoU on the debiased set, the share of land-boat pixels found, the false boat
  pixels around islands, and boat IoU on the in-distribution set.

Writes ``OUT/results.json`` and ``OUT/summary.md``; the figures go to
``docs/images/explain_guidance_cam.png`` and ``docs/images/explain_guidance_bars.png``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from napari_hitl.core.explain.attribution import band_attribution
from napari_hitl.core.explain.gradcam import grad_cam
from napari_hitl.core.explain.project import guide_window
from napari_hitl.core.explain.steering import (
    GuideTarget,
    SteerConfig,
    guide_job,
    measure_attention,
    negative_region,
)
from napari_hitl.core.learning.data import LabeledImage, Normalization
from napari_hitl.core.learning.net import NetClassifier, TrainConfig
from napari_hitl.core.progress import run_to_end

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "benchmarks" / "results" / "attention"
IMAGES = REPO / "docs" / "images"
BANDS = ["object", "water", "noise1", "noise2"]
CLASSES = ["background", "boat"]
NOISE = 0.15
WATER = 0.6
# Item centres this far apart keep every other pond out of a boat's Grad-CAM extent (the box
# grown by 2 px and by the U-Net's 24 px halo reaches 33 px; a pond's radius is at most 16 px).
SPACING = 50
LAYER: list[str | None] = [None]  # the Grad-CAM layer (--layer; None: the model's default)


# --------------------------------------------------------------------------- the data set
@dataclass
class Scene:
    """One synthetic image and what is in it."""

    x: np.ndarray  # C, H, W float32
    truth: np.ndarray  # H, W int64: 1 = boat
    water: np.ndarray  # H, W bool
    items: list[tuple[str, np.ndarray]] = field(default_factory=list)  # (kind, H, W bool box)


def _disk(shape: tuple[int, int], cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def make_scene(
    rng: np.random.Generator,
    kinds: list[str],
    size: int,
    amp: float,
    ring: int,
    spacing: float = SPACING,
) -> Scene:
    """A ``size``² scene holding one item of each kind, their centres ``spacing`` px apart.

    Kinds: ``boat_water`` (a boat in a pond), ``boat_land`` (a boat, no water), ``island`` (a pond
    with a dry hole but no boat), ``pond`` (a disk of water).
    """
    shape = (size, size)
    x = rng.normal(0.5, NOISE, (len(BANDS), size, size)).astype(np.float32)
    truth = np.zeros(shape, np.int64)
    water = np.zeros(shape, bool)
    scene = Scene(x, truth, water)
    centres: list[tuple[int, int]] = []
    reach = 7 + ring  # half the largest boat plus the pond's rim
    for kind in kinds:
        for _ in range(5000):
            cy, cx = (int(v) for v in rng.integers(reach + 1, size - reach - 1, 2))
            if all(np.hypot(cy - a, cx - b) >= spacing for a, b in centres):
                break
        else:
            raise RuntimeError(f"cannot place {len(kinds)} items in a {size}² image")
        centres.append((cy, cx))
        half = int(rng.integers(5, 8))
        box = np.zeros(shape, bool)
        box[cy - half : cy + half, cx - half : cx + half] = True
        if kind == "pond":
            water |= _disk(shape, cy - 0.5, cx - 0.5, half + ring)
        if kind in ("boat_water", "island"):
            water |= _disk(shape, cy - 0.5, cx - 0.5, half + ring) & ~box
        if kind in ("boat_water", "boat_land"):
            truth[box] = 1
            x[0][box] += amp
        scene.items.append((kind, box))
    x[1][water] += WATER
    return scene


TRAIN_KINDS = ["boat_water", "boat_water", "pond"]
TEST_KINDS = ["boat_land", "island", "pond"]


def sparse_labels(rng: np.random.Generator, truth: np.ndarray, p_obj: float, p_bg: float):
    """Random sparse labels: ``p_obj`` of the boat pixels, ``p_bg`` of the others."""
    target = np.full(truth.shape, -1, np.int64)
    r = rng.random(truth.shape)
    sel = np.where(truth == 1, r < p_obj, r < p_bg)
    target[sel] = truth[sel]
    return target


def labeled(name: str, s: Scene, target: np.ndarray) -> LabeledImage:
    """A training image."""
    return LabeledImage(name, s.x, target, (target >= 0).astype(np.float32), {"human": target >= 0})


# ------------------------------------------------------------------------------ measures
def segmentation_scores(clf: NetClassifier, scenes: list[Scene]) -> dict[str, float]:
    """Boat IoU, mIoU, land-boat recall and false boat pixels on islands over ``scenes``."""
    conf = np.zeros((2, 2), np.int64)
    land_hit = land_px = island_fp = 0
    for s in scenes:
        pred = clf.logits(s.x).argmax(0)
        conf += np.bincount(2 * s.truth.ravel() + pred.ravel(), minlength=4).reshape(2, 2)
        for kind, box in s.items:
            grown = ndimage.binary_dilation(box, iterations=3)
            if kind == "boat_land":
                land_hit += int((pred[box] == 1).sum())
                land_px += int(box.sum())
            elif kind == "island":
                island_fp += int((pred[grown] == 1).sum())
    inter = np.diag(conf).astype(float)
    union = conf.sum(0) + conf.sum(1) - np.diag(conf)
    iou = inter / np.maximum(union, 1)
    n_islands = sum(k == "island" for s in scenes for k, _ in s.items)
    return {
        "boat_iou": float(iou[1]),
        "miou": float(iou.mean()),
        "land_recall": land_hit / max(land_px, 1),
        "island_fp_px": island_fp / max(n_islands, 1),
    }


def cam_of_boat(clf: NetClassifier, s: Scene, box: np.ndarray):
    """Grad-CAM of class boat over ``box`` grown by 2 px (whole image, one tile)."""
    return grad_cam(clf, s.x, 1, ndimage.binary_dilation(box, iterations=2), layer=LAYER[0])


def cam_shares(clf: NetClassifier, scenes: list[Scene], kind: str) -> list[dict[str, float]]:
    """Per boat of ``kind``: the CAM's share in the boat, in the water, and its raw mass."""
    out = []
    for s in scenes:
        for k, box in s.items:
            if k != kind:
                continue
            cam = cam_of_boat(clf, s, box)
            m = cam.map.astype(np.float64)
            total = m.sum()
            out.append(
                {
                    "in_object": float(m[box].sum() / total) if total > 0 else 0.0,
                    "in_water": float(m[s.water].sum() / total) if total > 0 else 0.0,
                    "in_land": float(m[~s.water & ~box].sum() / total) if total > 0 else 0.0,
                    "raw_mass": float(total * cam.peak),
                }
            )
    return out


def band_reliance(clf: NetClassifier, scenes: list[Scene]) -> dict[str, float]:
    """Occlusion attribution of class boat over the boats in water: the signed share of the
    ``object`` and ``water`` bands (mean over the images). A model that relies on the context
    loses most of its boat evidence when the water band is replaced by its mean."""
    shares = []
    for s in scenes:
        region = s.truth == 1
        if region.any():
            shares.append(band_attribution(clf, s.x, 1, region, method="occlusion").shares)
    mean = np.mean(shares, axis=0)
    return {"share_object_band": float(mean[0]), "share_water_band": float(mean[1])}


def summarize_cams(cams: list[dict[str, float]], ref: list[dict[str, float]]) -> dict[str, float]:
    """Means of the CAM shares, and the raw mass relative to ``ref`` (the model before)."""
    rel = [c["raw_mass"] / max(r["raw_mass"], 1e-12) for c, r in zip(cams, ref, strict=True)]
    return {
        "cam_in_object": float(np.mean([c["in_object"] for c in cams])),
        "cam_in_water": float(np.mean([c["in_water"] for c in cams])),
        "cam_in_land": float(np.mean([c["in_land"] for c in cams])),
        "cam_mass": float(np.median(rel)),
    }


# ------------------------------------------------------------------------- the user's clicks
@dataclass
class Click:
    """One guided boat: its window (in the image) and the clicks in window coordinates."""

    name: str
    scene: Scene
    box: np.ndarray  # the boat, image coordinates
    window: tuple[int, int, int, int]
    positive: tuple[float, float]
    negative_clicks: list[tuple[int, int]]
    negative: np.ndarray  # union of the superpixels, window coordinates

    @property
    def neg_overlaps_boat(self) -> float:
        """Share of the boat's pixels inside the negative regions."""
        r0, r1, c0, c1 = self.window
        sub = self.box[r0:r1, c0:c1]
        return float((self.negative & sub).sum() / sub.sum())

    def target(self) -> GuideTarget:
        """The guide target of these clicks."""
        r0, r1, c0, c1 = self.window
        region = ndimage.binary_dilation(self.box, iterations=2)[r0:r1, c0:c1]
        x = self.scene.x[:, r0:r1, c0:c1]
        return GuideTarget(x, 1, region, [self.positive], self.negative.copy(), self.name)

    def to_json(self) -> dict[str, Any]:
        """What the user clicked, for the results file."""
        return {
            "name": self.name,
            "window": list(self.window),
            "positive": list(self.positive),
            "negative_clicks": [list(c) for c in self.negative_clicks],
            "negative_pixels": int(self.negative.sum()),
            "negative_overlaps_boat": self.neg_overlaps_boat,
        }


def first_clicks(
    clf: NetClassifier, scenes: list[Scene], superpixel: str, ring: int
) -> list[Click]:
    """Clicks on every boat of ``scenes`` as a user would give them in the GUI.

    Region: the boat's box grown by 2 px. Positive click: the boat's centre. Negative click: the
    pixel of the boat's pond, at least 3 px from the boat, where its Grad-CAM is strongest. It
    selects the superpixel of the window's CAM under it (which may reach into the boat: that is
    reported, not corrected), or with ``superpixel="ideal"`` the boat's pond exactly (the region
    a user would paint; the GUI has no such option). The window is the GUI's (region and clicks
    grown by two halos).
    """
    clicks = []
    for i, s in enumerate(scenes):
        for j, (kind, box) in enumerate(s.items):
            if kind != "boat_water":
                continue
            region = ndimage.binary_dilation(box, iterations=2)
            rows, cols = np.nonzero(box)
            centre = (float(rows.mean()), float(cols.mean()))
            cam = cam_of_boat(clf, s, box)
            pond = ndimage.binary_dilation(box, iterations=ring + 2)
            away = s.water & pond & ~ndimage.binary_dilation(box, iterations=3)
            nr, nc = _argmax(np.where(away, cam.map, -1.0))
            r0, r1, c0, c1 = guide_window(
                region, [(round(centre[0]), round(centre[1])), (nr, nc)], clf.halo, 4
            )
            wcam = grad_cam(clf, s.x[:, r0:r1, c0:c1], 1, region[r0:r1, c0:c1], layer=LAYER[0])
            if superpixel == "ideal":  # not a GUI option: the pond itself, as if painted
                neg = (s.water & pond)[r0:r1, c0:c1]
            else:
                neg = negative_region(wcam.map, (nr - r0, nc - c0), superpixel)
            clicks.append(
                Click(
                    f"train{i}-boat{j}",
                    s,
                    box,
                    (r0, r1, c0, c1),
                    (centre[0] - r0, centre[1] - c0),
                    [(nr - r0, nc - c0)],
                    neg,
                )
            )
    return clicks


def next_clicks(clf: NetClassifier, clicks: list[Click], superpixel: str) -> list[Click]:
    """Another round: the user looks at the guided model's CAM and adds one negative click on
    its strongest pixel outside the boat (3 px away), wherever it now is (land or water)."""
    out = []
    for ck in clicks:
        r0, r1, c0, c1 = ck.window
        t = ck.target()
        wcam = grad_cam(clf, t.x, 1, t.region, layer=LAYER[0])
        away = ~ndimage.binary_dilation(ck.box, iterations=3)[r0:r1, c0:c1]
        nr, nc = _argmax(np.where(away, wcam.map, -1.0))
        neg = ck.negative | negative_region(wcam.map, (nr, nc), superpixel)
        out.append(
            Click(
                ck.name,
                ck.scene,
                ck.box,
                ck.window,
                ck.positive,
                [*ck.negative_clicks, (nr, nc)],
                neg,
            )
        )
    return out


def _argmax(a: np.ndarray) -> tuple[int, int]:
    r, c = np.unravel_index(int(a.argmax()), a.shape)
    return int(r), int(c)


def report_means(measures) -> dict[str, float]:
    """Means of a guide report's AttentionMeasures."""
    return {
        "distance": float(np.nanmean([m.distance for m in measures])),
        "negative_share": float(np.nanmean([m.negative_share for m in measures])),
        "mass": float(np.median([m.mass for m in measures])),
    }


# ------------------------------------------------------------------------------- one seed
def run_seed(seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Train, measure, guide and control for one seed; the numbers as a dict."""
    t_seed = time.perf_counter()
    # one random stream per set: the training data do not change with the evaluation sets' size
    rng_train, rng_val, rng_test = (np.random.default_rng([seed, k]) for k in range(3))
    size, amp, ring = args.size, args.amp, args.ring
    train = [make_scene(rng_train, TRAIN_KINDS, size, amp, ring) for _ in range(args.train_images)]
    images = [
        labeled(f"train{i}", s, sparse_labels(rng_train, s.truth, 0.15, 0.02))
        for i, s in enumerate(train)
    ]
    val = [make_scene(rng_val, TRAIN_KINDS, size, amp, ring) for _ in range(args.test_images)]
    test = [make_scene(rng_test, TEST_KINDS, size, amp, ring) for _ in range(args.test_images)]
    clf = NetClassifier(args.model, Normalization(BANDS, [0.0] * 4, [1.0] * 4), [1, 2], CLASSES)
    t0 = time.perf_counter()
    run_to_end(clf.fit(images, TrainConfig(model=args.model, steps=args.train_steps, seed=seed)))
    train_s = time.perf_counter() - t0
    main_neg = args.negatives[0]
    clicks = first_clicks(clf, train[: args.guide_images], main_neg, ring)
    targets = [c.target() for c in clicks]  # the first round's clicks: the fixed yardstick

    val_ref = cam_shares(clf, val, "boat_water")
    land_ref = cam_shares(clf, test, "boat_land")
    clicked_ref = cam_shares(clf, train[: args.guide_images], "boat_water")

    def measure(model: NetClassifier) -> dict[str, Any]:
        row: dict[str, Any] = {}
        row.update({f"test_{k}": v for k, v in segmentation_scores(model, test).items()})
        row["val_boat_iou"] = segmentation_scores(model, val)["boat_iou"]
        row.update(summarize_cams(cam_shares(model, val, "boat_water"), val_ref))
        row.update(band_reliance(model, val))
        land = summarize_cams(cam_shares(model, test, "boat_land"), land_ref)
        row["land_cam_in_object"] = land["cam_in_object"]
        row["land_cam_mass"] = land["cam_mass"]
        # distance and negative share of the first round's clicks; measure_attention's own
        # ``mass`` is always 1 (its reference is the map it measures), so the clicked boats'
        # mass relative to before comes from the whole-image Grad-CAM instead
        clicked = report_means(measure_attention(model.net, targets, LAYER[0]))
        row["clicked_distance"] = clicked["distance"]
        row["clicked_negative_share"] = clicked["negative_share"]
        cams = summarize_cams(
            cam_shares(model, train[: args.guide_images], "boat_water"), clicked_ref
        )
        row["clicked_in_object"] = cams["cam_in_object"]
        row["clicked_mass"] = cams["cam_mass"]
        return row

    rows: dict[str, dict[str, Any]] = {"before": measure(clf)}
    rows["before"]["seconds"] = train_s
    models: dict[str, NetClassifier] = {"before": clf}

    def fine_tune(key: str, start: NetClassifier, tg: list[GuideTarget], steps: int, w_g: float):
        cfg = SteerConfig(steps=steps, w_g=w_g, w_c=args.w_c, lr=args.lr, layer=LAYER[0], seed=seed)
        t0 = time.perf_counter()
        model, report = run_to_end(guide_job(start, tg, images, cfg))
        secs = time.perf_counter() - t0
        rows[key] = measure(model)
        rows[key]["seconds"] = secs
        rows[key]["final_loss"] = report.losses[-1]
        if w_g > 0:  # the report's own measures, on the targets this run was guided with
            rows[key]["report_before"] = report_means(report.before)
            rows[key]["report_after"] = report_means(report.after)
        models[key] = model
        print(
            f"  seed {seed} {key}: {secs:.0f} s, test boat IoU "
            f"{rows[key]['test_boat_iou']:.3f} (before {rows['before']['test_boat_iou']:.3f}), "
            f"CAM in boat {rows[key]['cam_in_object']:.2f} "
            f"(before {rows['before']['cam_in_object']:.2f})",
            flush=True,
        )
        return model

    control_steps = sorted({*args.steps, *(args.steps[0] * r for r in range(2, args.rounds + 1))})
    for steps in control_steps:
        # with w_g = 0 the clicks do not enter the loss (nor its gradient): one target is enough
        # and keeps the control cheap (guide_job computes the CAM of every target every step)
        fine_tune(f"control-{steps}", clf, targets[:1], steps, 0.0)
    for steps in args.steps:
        fine_tune(f"guided-{steps}", clf, targets, steps, args.w_g)
    rounds = [clicks]
    model = models[f"guided-{args.steps[0]}"]
    for r in range(2, args.rounds + 1):  # the user looks again and adds negative clicks
        rounds.append(
            next_clicks(model, rounds[-1], "felzenszwalb" if main_neg == "ideal" else main_neg)
        )
        key = f"guided-{args.steps[0]}x{r}"
        model = fine_tune(key, model, [c.target() for c in rounds[-1]], args.steps[0], args.w_g)
    other_clicks: dict[str, list[Click]] = {}
    for neg in args.negatives[1:]:
        other_clicks[neg] = first_clicks(clf, train[: args.guide_images], neg, ring)
        tg = [c.target() for c in other_clicks[neg]]
        fine_tune(f"guided-{args.steps[0]}-{neg}", clf, tg, args.steps[0], args.w_g)
    result = {
        "seed": seed,
        "train_seconds": train_s,
        "seconds": time.perf_counter() - t_seed,
        "clicks": {
            **{
                f"{main_neg}-round{i + 1}": [c.to_json() for c in cl] for i, cl in enumerate(rounds)
            },
            **{neg: [c.to_json() for c in cl] for neg, cl in other_clicks.items()},
        },
        "rows": rows,
    }
    if seed == args.seeds[0] and not args.no_figures:
        clicks_by_neg = {main_neg: clicks, **other_clicks}
        result["_figure"] = (train, test, clicks_by_neg, models)
    return result


# ------------------------------------------------------------------------------ reporting
ACCURACY_COLUMNS = [
    ("test_boat_iou", "test boat IoU"),
    ("test_miou", "test mIoU"),
    ("test_land_recall", "land boat px found"),
    ("test_island_fp_px", "false boat px / island"),
    ("val_boat_iou", "in-dist. boat IoU"),
    ("share_object_band", "object band share"),
    ("share_water_band", "water band share"),
    ("seconds", "seconds"),
]
ATTENTION_COLUMNS = [
    ("cam_in_object", "CAM in boat"),
    ("cam_in_water", "CAM in water"),
    ("cam_in_land", "CAM on land"),
    ("cam_mass", "CAM mass"),
    ("land_cam_in_object", "CAM in land boat (test)"),
    ("clicked_in_object", "clicked: CAM in boat"),
    ("clicked_distance", "clicked: distance"),
    ("clicked_negative_share", "clicked: negative share"),
    ("clicked_mass", "clicked: mass"),
]


def aggregate(results: list[dict[str, Any]]) -> dict[str, dict[str, tuple[float, float]]]:
    """Mean and sd over the seeds of every number of every variant."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for key in results[0]["rows"]:
        out[key] = {}
        for col in results[0]["rows"][key]:
            vals = [r["rows"][key][col] for r in results]
            if isinstance(vals[0], (int, float)):
                a = np.asarray(vals, float)
                out[key][col] = (float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0)
    return out


def table(
    agg: dict[str, dict[str, tuple[float, float]]], n_seeds: int, columns: list[tuple[str, str]]
) -> str:
    """A markdown table, one row per variant, mean ± sd over the seeds."""
    head = "| variant | " + " | ".join(label for _, label in columns) + " |"
    lines = [head, "|---|" + "---:|" * len(columns)]
    for key, cols in agg.items():
        cells = []
        for col, _ in columns:
            m, sd = cols.get(col, (float("nan"), 0.0))
            fmt = ".0f" if col in ("seconds", "test_island_fp_px") else ".3f"
            cells.append(f"{m:{fmt}} ± {sd:{fmt}}" if n_seeds > 1 else f"{m:{fmt}}")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figure_cams(fig_data, path: Path, steps: int, half: int = 34) -> None:
    """An example clicked boat and a land boat: the image, CAM before, guided and control."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train, test, clicks_by_neg, models = fig_data
    main = next(iter(clicks_by_neg))
    # (model, title, the clicks it was guided with: drawn on its map)
    keys = [
        ("before", "before", main),
        (f"guided-{steps}", f"guided ({main})", main),
        (f"control-{steps}", "control (w_g = 0)", None),
    ]
    if f"guided-{steps}-ideal" in models:
        keys.insert(2, (f"guided-{steps}-ideal", "guided (ideal negative)", "ideal"))
    scene = train[0]
    box = next(b for k, b in scene.items if k == "boat_water")
    land_scene = test[0]
    land_box = next(b for k, b in land_scene.items if k == "boat_land")
    rows_ = [
        ("clicked boat (training image)", scene, box, True),
        ("boat on land (test image)", land_scene, land_box, False),
    ]
    fig, axes = plt.subplots(2, len(keys) + 1, figsize=(1.9 * (len(keys) + 1), 5.0))
    for i, (title, s, b, clicked) in enumerate(rows_):
        w0, w1, w2, w3 = _crop(b, half)
        bb = b[w0:w1, w2:w3]
        rgb = np.stack([s.x[0], s.x[0], s.x[1]], -1)[w0:w1, w2:w3]
        ax = axes[i, 0]
        ax.imshow(np.clip((rgb - 0.2) / 1.0, 0, 1))
        ax.contour(bb, [0.5], colors="yellow", linewidths=0.8)
        ax.set_title(f"{title}\nR,G: object band, B: water", fontsize=7)
        if clicked:
            _draw_clicks(ax, clicks_by_neg[main][0], b.shape, (w0, w1, w2, w3))
        for j, (key, label, neg) in enumerate(keys, start=1):
            ax = axes[i, j]
            cam = cam_of_boat(models[key], s, b).map[w0:w1, w2:w3]
            ax.imshow(s.x[0][w0:w1, w2:w3], cmap="gray", vmin=0, vmax=1.2)
            ax.imshow(cam, cmap="jet", alpha=0.5, vmin=0, vmax=1)
            ax.contour(bb, [0.5], colors="white", linewidths=0.8)
            share = cam[bb].sum() / max(cam.sum(), 1e-12)
            ax.set_title(f"CAM {label}\n{share:.0%} of the map in the boat", fontsize=7)
            if clicked and neg is not None:
                _draw_clicks(ax, clicks_by_neg[neg][0], b.shape, (w0, w1, w2, w3))
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        f"Grad-CAM of 'boat' over the boat (+2 px), {steps} steps of guidance or control. "
        "Green +: positive click; red x, red line: negative click and its region",
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    _shrink_png(path)


def _draw_clicks(ax, ck: Click, shape: tuple[int, int], crop: tuple[int, int, int, int]) -> None:
    r0, _r1, c0, _c1 = ck.window
    w0, w1, w2, w3 = crop
    neg = np.zeros(shape, bool)
    neg[r0 : r0 + ck.negative.shape[0], c0 : c0 + ck.negative.shape[1]] = ck.negative
    ax.plot(ck.positive[1] + c0 - w2, ck.positive[0] + r0 - w0, "g+", ms=10, mew=2)
    for nr, nc in ck.negative_clicks:
        ax.plot(nc + c0 - w2, nr + r0 - w0, "rx", ms=8, mew=2)
    ax.contour(neg[w0:w1, w2:w3], [0.5], colors="red", linewidths=0.8)


def _shrink_png(path: Path, colors: int = 128) -> None:
    """Re-save a PNG with a palette: the noise of the images compresses badly otherwise."""
    from PIL import Image

    with Image.open(path) as im:
        small = im.convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def _crop(box: np.ndarray, half: int) -> tuple[int, int, int, int]:
    """A ``2·half`` square around ``box``, inside the image."""
    rows, cols = np.nonzero(box)
    cy, cx = int(rows.mean()), int(cols.mean())
    h, w = box.shape
    r0 = int(np.clip(cy - half, 0, h - 2 * half))
    c0 = int(np.clip(cx - half, 0, w - 2 * half))
    return r0, r0 + 2 * half, c0, c0 + 2 * half


def figure_bars(agg, results: list[dict[str, Any]], path: Path) -> None:
    """Bars (mean ± sd over the seeds, dots: each seed): CAM share in the boat, water band
    share and boat IoU for every variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(agg)
    colors = {"before": "0.6", "control": "tab:blue", "guided": "tab:orange"}
    panels = [
        ("cam_in_object", "Grad-CAM mass in the boat\n(held-out boats in water)"),
        ("share_water_band", "water band's share of the boat\nevidence (occlusion, held-out)"),
        ("test_boat_iou", "boat IoU, debiased test set\n(boats on land, empty islands)"),
        ("val_boat_iou", "boat IoU, in-distribution\n(held-out boats in water)"),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(12, 3.6))
    for ax, (col, title) in zip(axes, panels, strict=True):
        means = [agg[k][col][0] for k in keys]
        sds = [agg[k][col][1] for k in keys]
        ax.bar(
            range(len(keys)),
            means,
            yerr=sds,
            capsize=3,
            color=[colors[k.split("-")[0]] for k in keys],
            error_kw={"elinewidth": 0.8},
        )
        for i, k in enumerate(keys):
            vals = [r["rows"][k][col] for r in results]
            ax.plot(np.full(len(vals), i) + np.linspace(-0.2, 0.2, len(vals)), vals, "k.", ms=3)
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels([k.replace("-", "\n", 1) for k in keys], fontsize=7, rotation=90)
        ax.set_title(title, fontsize=9)
        ax.set_ylim(0, 1)
    fig.suptitle(
        f"U-Net, {len(results)} seeds: bars mean ± sd, dots one seed each", fontsize=9, y=0.99
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    _shrink_png(path)


# ------------------------------------------------------------------------------------ main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated seeds")
    p.add_argument("--steps", default="30,60", help="guidance steps to try (default 30,60)")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"result folder (default {OUT}, with --quick OUT/quick)",
    )
    p.add_argument("--quick", action="store_true", help="tiny configuration (< 60 s)")
    p.add_argument("--model", default="unet", choices=["unet", "patch-cnn"])
    p.add_argument("--train-steps", type=int, default=150, help="steps of the first training")
    p.add_argument("--train-images", type=int, default=6)
    p.add_argument("--test-images", type=int, default=6, help="images per evaluation set")
    p.add_argument("--guide-images", type=int, default=2, help="training images clicked on")
    p.add_argument("--size", type=int, default=128, help="image edge")
    p.add_argument("--amp", type=float, default=0.3, help="the boat's signal in its band")
    p.add_argument("--ring", type=int, default=9, help="pond rim around a boat (px)")
    p.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="click rounds: each later one adds a negative click where the guided CAM now is",
    )
    p.add_argument("--w-g", type=float, default=0.75)
    p.add_argument("--w-c", type=float, default=0.25)
    p.add_argument("--lr", type=float, default=None, help="guidance lr (default: the model's)")
    p.add_argument(
        "--negatives",
        default="felzenszwalb,slic,ideal",
        help="negative regions to try: felzenszwalb, slic (the GUI's superpixels of the CAM) "
        "or ideal (the pond itself); the first is used for every step count and round, the "
        "others at the first step count only",
    )
    p.add_argument("--layer", default=None, help="Grad-CAM layer (default: the model's)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-figures", action="store_true", help="do not write docs/images/*.png")
    p.add_argument("--figures-dir", type=Path, default=IMAGES)
    args = p.parse_args(argv)
    args.seeds = [int(s) for s in str(args.seeds).split(",") if s.strip()]
    args.steps = [int(s) for s in str(args.steps).split(",") if s.strip()]
    args.negatives = [s.strip() for s in str(args.negatives).split(",") if s.strip()]
    bad = set(args.negatives) - {"felzenszwalb", "slic", "ideal"}
    if bad or not args.negatives:
        p.error(f"unknown negatives {sorted(bad)}")
    if args.quick:
        args.seeds, args.steps, args.rounds = args.seeds[:1], [3], min(args.rounds, 2)
        args.train_steps, args.train_images, args.test_images, args.guide_images = 20, 2, 2, 1
        args.no_figures = True
    if args.out is None:
        args.out = OUT / "quick" if args.quick else OUT
    return args


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and write the results."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    LAYER[0] = args.layer
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results = []
    for seed in args.seeds:
        print(f"seed {seed}: training {args.model} ({args.train_steps} steps)", flush=True)
        results.append(run_seed(seed, args))
    agg = aggregate(results)
    text = (
        table(agg, len(results), ACCURACY_COLUMNS)
        + "\n\n"
        + table(agg, len(results), ATTENTION_COLUMNS)
    )
    total = time.perf_counter() - t0
    print(text)
    print(f"total {total:.0f} s")
    fig_data = results[0].pop("_figure", None)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    (args.out / "results.json").write_text(
        json.dumps(
            {
                "config": config,
                "machine": platform.processor() or platform.machine(),
                "torch_threads": torch.get_num_threads(),
                "total_seconds": total,
                "summary": {k: {c: list(v) for c, v in cols.items()} for k, cols in agg.items()},
                "seeds": results,
            },
            indent=1,
        )
    )
    (args.out / "summary.md").write_text(
        f"{args.model}, Grad-CAM layer {args.layer or 'default'}, seeds {args.seeds}, guidance "
        f"steps {args.steps}, total {total:.0f} s\n\n{text}\n"
    )
    if fig_data is not None:
        args.figures_dir.mkdir(parents=True, exist_ok=True)
        figure_cams(fig_data, args.figures_dir / "explain_guidance_cam.png", args.steps[0])
        figure_bars(agg, results, args.figures_dir / "explain_guidance_bars.png")
    print(f"wrote {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
