"""The simulated-user benchmark (source paper §3.1): partial labels → train → accept → repeat.

:func:`simulate` runs the protocol on in-memory images and ground-truth masks and returns the
report (see ``docs/benchmarks.md``); :func:`load_image_folder` reads the ``--images/--masks``
folders of the CLI.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from napari_hitl.core.active.first_images import first_images
from napari_hitl.core.active.strategies import (
    STRATEGIES,
    Box,
    Schedule,
    item_key,
    priorities,
    rank_order,
    score_tiles,
    split_routes,
)
from napari_hitl.core.choices import AUTO_MODEL, DEFAULT_MARGIN, DEFAULT_THRESHOLD, SEED_CHOICES
from napari_hitl.core.errors import InputFileError
from napari_hitl.core.evaluation.corrective import correct_pool, human_strokes
from napari_hitl.core.evaluation.curves import plot_curves
from napari_hitl.core.evaluation.metrics import confusion, image_scores, scores
from napari_hitl.core.evaluation.scribbles import sparse_scribbles
from napari_hitl.core.io.rasters import RASTER_SUFFIXES, read_mask, read_raster
from napari_hitl.core.jsonable import Jsonable
from napari_hitl.core.learning.auto import ModelChoice, auto_classifier
from napari_hitl.core.learning.data import (
    TrainingDataError,
    make_labeled_image,
    normalization_from_bands,
)
from napari_hitl.core.learning.net import TrainConfig
from napari_hitl.core.learning.prediction import Prediction, predict_normalized
from napari_hitl.core.learning.registry import make_classifier
from napari_hitl.core.loop.accept import accept_mask, push
from napari_hitl.core.progress import CancelToken, Progress
from napari_hitl.core.store import PROVENANCE_HUMAN


@dataclass
class SimulationConfig(Jsonable):
    """Settings of the simulated user (the CLI options of ``napari-hitl simulate``)."""

    model: str = "unet"
    iterations: int = 10
    threshold: float = DEFAULT_THRESHOLD
    interaction: str = "none"  # "none" | "oracle" | "correct"
    seed_images: int = 10
    # which pool images get the first strokes: "random" | "typical" (first_images: the most
    # typical image of each of as many kinds of image, read from the bands alone)
    seed_choice: str = "random"
    scribble_fraction: float = 0.01
    test_fraction: float = 0.25
    max_images: int | None = None
    seed: int = 0
    margin: int = DEFAULT_MARGIN  # px between accepted pixels and a predicted boundary
    train: TrainConfig = field(default_factory=TrainConfig)
    # active learning (None: the seed images are all the human ever labels)
    strategy: str | None = None
    budget: int | None = None  # human pixels per iteration (default: 2 images' strokes)
    tile: int | None = None  # rank tiles of this edge instead of whole images
    pseudo: str = "all"  # "all" pool images | "routed" (the machine's γ share) | "none"
    schedule: Schedule = field(default_factory=Schedule)
    background: tuple[int, ...] = ()  # classes that are not objects for τ_l
    # the pool is finished once labeled fraction and label accuracy both reach it; a run with
    # the corrective user ("correct") stops there
    target: float = DEFAULT_THRESHOLD


@dataclass
class Sample:
    """One image of a simulation: bands ``C, H, W`` and its ground truth (0 = none)."""

    name: str
    bands: np.ndarray
    truth: np.ndarray


def load_image_folder(
    images_dir: str | Path, masks_dir: str | Path, max_images: int | None = None
) -> list[Sample]:
    """Pair images and masks by file stem.

    Images may be gray, RGB or multiband (band-first or band-last); masks are single-channel
    integers with 0 = no ground truth.

    Raises
    ------
    InputFileError
        A folder is missing, nothing pairs up, or the images have different band counts.
    """
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    for d in (images_dir, masks_dir):
        if not d.is_dir():
            raise InputFileError(d, "no such folder")
    masks = {p.stem: p for p in masks_dir.iterdir() if p.suffix.lower() in RASTER_SUFFIXES}
    pairs = sorted(
        (p, masks[p.stem])
        for p in images_dir.iterdir()
        if p.suffix.lower() in RASTER_SUFFIXES and p.stem in masks
    )
    if not pairs:
        raise InputFileError(
            images_dir, f"no image has a mask of the same file stem in {masks_dir}"
        )
    if max_images:
        pairs = pairs[:max_images]
    out = []
    for img_path, mask_path in pairs:
        bands = np.asarray(read_raster(img_path).data)
        truth = read_mask(mask_path)
        if truth.shape != bands.shape[1:]:
            raise InputFileError(
                mask_path, f"mask shape {truth.shape} != image shape {bands.shape[1:]}"
            )
        if truth.min(initial=0) < 0:
            raise InputFileError(
                mask_path, "masks hold 0 (no ground truth) and classes 1..K; found negative values"
            )
        out.append(Sample(img_path.stem, bands, truth.astype(np.int64)))
    counts = {s.bands.shape[0] for s in out}
    if len(counts) > 1:
        by = {c: next(s.name for s in out if s.bands.shape[0] == c) for c in counts}
        raise InputFileError(images_dir, f"images have different band counts: {by}")
    return out


CALIBRATION_THRESHOLDS = (0.5, 0.8, 0.9, 0.95, 0.99)
INTERACTIONS = ("none", "oracle", "correct")


def reliability(pred: np.ndarray, truth: np.ndarray, confidence: np.ndarray) -> dict[str, Any]:
    """Does the confidence mean what it says? On pixels with ground truth: for each threshold t,
    the share of pixels at confidence ≥ t and how many of them are right (should be ≥ t), and
    the expected calibration error over 10 bins."""
    m = truth > 0
    right = pred[m] == truth[m]
    conf = confidence[m]
    out: dict[str, Any] = {"thresholds": {}}
    for t in CALIBRATION_THRESHOLDS:
        sel = conf >= t
        out["thresholds"][str(t)] = {
            "share": float(sel.mean()) if sel.size else float("nan"),
            "accuracy": float(right[sel].mean()) if sel.any() else float("nan"),
        }
    bins = np.clip((conf * 10).astype(int), 0, 9)
    ece = 0.0
    for b in range(10):
        sel = bins == b
        if sel.any():
            ece += sel.mean() * abs(right[sel].mean() - conf[sel].mean())
    out["ece"] = float(ece)
    return out


def simulate(
    samples: Sequence[Sample],
    config: SimulationConfig,
    class_values: Sequence[int] | None = None,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, dict[str, Any]]:
    """Run the simulated-user protocol; a progress generator returning the report dict."""
    rng = np.random.default_rng(config.seed)
    if len(samples) < 2:
        raise TrainingDataError("the simulation needs at least 2 images (a pool and a test set)")
    values = (
        sorted(class_values)
        if class_values
        else sorted({int(v) for s in samples for v in np.unique(s.truth) if v > 0})
    )
    for s in samples:
        extra = set(np.unique(s.truth).tolist()) - set(values) - {0}
        if extra:
            raise TrainingDataError(
                f"mask of {s.name} has values {sorted(extra)} beyond the classes {values}"
            )
    if len(values) < 2:
        raise TrainingDataError(f"the masks hold only class {values}; training needs two classes")
    k = max(values)
    check_config(config)
    order = rng.permutation(len(samples))
    n_test = max(1, round(len(samples) * config.test_fraction))
    test = [samples[i] for i in order[:n_test]]
    pool = [samples[i] for i in order[n_test:]]
    seeds = rng.choice(len(pool), size=min(config.seed_images, len(pool)), replace=False)

    norm = normalization_from_bands([s.bands for s in pool])
    norm.row_position = bool(config.train.row_position)
    xs_pool = [norm.apply(s.bands) for s in pool]
    if config.seed_choice == "typical":
        seeds = np.asarray(first_images(xs_pool, len(seeds), seed=config.seed))
    xs_test = [norm.apply(s.bands) for s in test]
    labels = [np.zeros(s.truth.shape, np.uint16) for s in pool]
    prov = [np.zeros(s.truth.shape, np.uint16) for s in pool]
    for j in seeds:
        scrib = sparse_scribbles(
            pool[j].truth.astype(np.int64),
            config.scribble_fraction,
            seed=config.seed * 1000 + int(j),
        )
        labels[j] = scrib.astype(np.uint16)
        prov[j] = np.where(scrib > 0, PROVENANCE_HUMAN, 0).astype(np.uint16)
    gt_pool = np.concatenate([s.truth.ravel() for s in pool])
    has_gt = gt_pool > 0
    names = [f"class {v}" for v in values]
    # ``auto`` picks its model on the seed strokes at the first Train
    clf = None if config.model == AUTO_MODEL else make_classifier(config.model, norm, values, names)
    model_choice: ModelChoice | None = None
    train_cfg = TrainConfig(**{**asdict(config.train), "model": config.model, "seed": config.seed})
    iterations: list[dict[str, Any]] = []
    total = config.iterations * (1 + len(pool) + len(test))
    done = 0
    correcting = config.interaction == "correct"
    budget = config.budget or (
        correction_budget(pool) if correcting else _default_budget(pool, config.scribble_fraction)
    )
    strokes = sum(human_strokes(lab, pv) for lab, pv in zip(labels, prov, strict=True))
    truths_pool = [s.truth for s in pool]
    visited: set[tuple[int, Box]] = set()  # items the simulated human has stroked
    difficulty: list[dict[str, Any]] = []
    for it in range(1, config.iterations + 1):
        images = [
            make_labeled_image(s.name, x, lab, pv, values, train_cfg.machine_weight)
            for s, x, lab, pv in zip(pool, xs_pool, labels, prov, strict=True)
            if lab.any()
        ]
        t0 = time.perf_counter()
        if clf is None:
            clf, model_choice = yield from _relay(
                auto_classifier(images, train_cfg, norm, values, names, cancel),
                done, total, f"iteration {it}: ",
            )  # fmt: skip
        train_report = yield from _relay(
            clf.fit(images, train_cfg, cancel), done, total, f"iteration {it}: "
        )
        train_s = time.perf_counter() - t0
        done += 1
        human_px = int(sum(int((p == PROVENANCE_HUMAN).sum()) for p in prov))
        t0 = time.perf_counter()
        preds: list[Prediction] = yield from _predict_each(
            clf, xs_pool, cancel, done, total, f"iteration {it}: pool", lambda p: p
        )
        done += len(xs_pool)
        # active learning: rank the pool's items, the human strokes the top ones
        chosen: list[str] = []
        machine_boxes: dict[int, list[Box]] | None = None
        if config.strategy is not None:
            items, prio = _rank_pool(config, preds, labels, prov, it - 1, visited)
            order = [items[k] for k in rank_order(prio)]
            open_ = [(j, box) for j, box, _ in order if (j, box) not in visited]
            difficulty = [
                {
                    "iteration": it,
                    "rank": r + 1,
                    "image": pool[j].name,
                    "box": list(box),
                    **st.to_json(),
                }
                for r, (j, box, st) in enumerate(order)
            ]
            n_human, _ = split_routes(len(open_), config.schedule.gamma(it - 1))
            machine_boxes = {}
            for j, box in open_[n_human:]:
                machine_boxes.setdefault(j, []).append(box)
            spent = 0
            for j, box in [] if correcting else open_:  # the corrective user strokes later
                if spent >= budget:
                    break
                spent += _human_strokes(pool[j], labels[j], prov[j], box, budget - spent,
                                        config, seed=it * 100003 + len(visited))  # fmt: skip
                visited.add((j, box))
                chosen.append(item_key(pool[j].name, box))
        accepted = accepted_right = judged_total = 0
        for j, (s, pred) in enumerate(zip(pool, preds, strict=True)):
            if config.pseudo == "none" or (
                config.pseudo == "routed" and machine_boxes is not None and j not in machine_boxes
            ):
                continue
            region = None
            if config.pseudo == "routed" and machine_boxes is not None:
                region = np.zeros(s.truth.shape, bool)
                for r0, r1, c0, c1 in machine_boxes[j]:
                    region[r0:r1, c0:c1] = True
            acc = accept_mask(
                pred.confidence,
                config.threshold,
                region,
                predicted=pred.labels,
                margin=config.margin,
            ) & (labels[j] == 0)
            if config.interaction == "oracle":
                acc &= ~((s.truth > 0) & (pred.labels != s.truth))
            labels[j], prov[j], rec = push(labels[j], prov[j], pred.labels, acc, it)
            gt = s.truth.ravel()[rec.index]
            accepted += rec.count
            accepted_right += int((rec.values[gt > 0] == gt[gt > 0]).sum())
            judged_total += int((gt > 0).sum())
        del preds
        infer_s = time.perf_counter() - t0
        fix = None
        if correcting:  # she looks at the pool's labels and paints over what is wrong/missing
            fix = correct_pool(
                truths_pool,
                labels,
                prov,
                budget,
                np.random.default_rng(config.seed * 1_000_003 + it),
                order=[(j, box) for j, box, _ in order] if config.strategy is not None else None,
            )
            strokes += fix.strokes
        kept = yield from _predict_each(
            clf, xs_test, cancel, done, total, f"iteration {it}: test",
            lambda p: (p.labels.astype(np.int64).ravel(), p.confidence.ravel()),
        )  # fmt: skip
        done += len(xs_test)
        preds_t, confs = [lab for lab, _ in kept], [conf for _, conf in kept]
        truths = [s.truth.ravel() for s in test]
        # one confusion per test image: its row below, and summed, the pooled scores
        cms = [confusion(p, t, k) for p, t in zip(preds_t, truths, strict=True)]
        pooled = scores(sum(cms))
        test_acc, test_miou = pooled["pixel_accuracy"], pooled["miou"]
        calibration = reliability(
            np.concatenate(preds_t), np.concatenate(truths), np.concatenate(confs)
        )
        lab_all = np.concatenate([lab.ravel() for lab in labels])
        labeled = (lab_all > 0) & has_gt
        human_after = int(sum(int((p == PROVENANCE_HUMAN).sum()) for p in prov))
        row = {
            "iteration": it,
            "labeled_fraction": float(labeled.sum() / max(has_gt.sum(), 1)),
            "label_accuracy": float((lab_all[labeled] == gt_pool[labeled]).mean())
            if labeled.any()
            else float("nan"),
            "test_pixel_accuracy": test_acc,
            "test_miou": test_miou,
            "human_pixels": human_px,
            "accepted_pixels": accepted,
            "accepted_accuracy": float(accepted_right / judged_total)
            if judged_total
            else float("nan"),
            "train_seconds": round(train_s, 3),
            "train_steps": train_report.steps,
            "infer_seconds": round(infer_s, 3),
            "temperature": train_report.temperature,
            "test_calibration": calibration,
            "test_images": image_scores(cms, [s.name for s in test]),
        }
        row["human_pixels_total"] = human_after
        row["human_strokes"] = strokes
        row["human_fraction"] = human_after / max(int(has_gt.sum()), 1)
        if fix is not None:
            row["corrected_pixels"] = fix.pixels
            row["corrected_over_machine"] = fix.over_machine
            row["correction_strokes"] = fix.strokes
        if config.strategy is not None:
            row["human_pixels_added"] = human_after - human_px
            row["chosen"] = chosen
            row["machine_items"] = sum(len(v) for v in (machine_boxes or {}).values())
            row["beta"] = config.schedule.beta(it - 1)
            row["gamma"] = config.schedule.gamma(it - 1)
        iterations.append(row)
        if correcting and pool_finished(row, config.target):
            break
    return {
        "config": {
            **config.to_json(),
            "classes": values,
            "n_pool": len(pool),
            "n_test": len(test),
            "pool": [s.name for s in pool],
            "test": [s.name for s in test],
            "seed_image_names": [pool[j].name for j in seeds],
            "model_choice": model_choice.to_json() if model_choice is not None else None,
        },
        "iterations": iterations,
        "difficulty": difficulty,
        "effort": effort_summary(iterations, config.target),
        "summary": run_summary(iterations),
    }


def check_config(config: SimulationConfig) -> None:
    """Raise ``ValueError`` with a one-line message for settings that cannot run."""
    if config.strategy is not None and config.strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {config.strategy!r}; choose from {STRATEGIES}")
    if config.pseudo not in ("all", "routed", "none"):
        raise ValueError(f"pseudo must be 'all', 'routed' or 'none', got {config.pseudo!r}")
    if config.interaction not in INTERACTIONS:
        raise ValueError(
            f"interaction must be one of {', '.join(INTERACTIONS)}, got {config.interaction!r}"
        )
    if config.seed_choice not in SEED_CHOICES:
        raise ValueError(
            f"seed choice must be one of {', '.join(SEED_CHOICES)}, got {config.seed_choice!r}"
        )
    if not 0 < config.target <= 1:
        raise ValueError(f"--target must be in (0, 1], got {config.target}")
    if config.budget is not None and config.budget <= 0:
        raise ValueError(f"--budget must be a positive number of pixels, got {config.budget}")
    if config.iterations < 1:
        raise ValueError(f"--iterations must be at least 1, got {config.iterations}")


def pool_finished(row: dict[str, Any], target: float) -> bool:
    """Is the pool finished: labeled fraction and label accuracy both at or above ``target``?"""
    acc = row["label_accuracy"]
    return row["labeled_fraction"] >= target and acc == acc and acc >= target


def run_summary(iterations: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The run in a few figures: final and best test mIoU (and their ratio, 1 = no loss after
    the best iteration), the share of accepted pixels that were right over every iteration
    (pixel-weighted, pixels without ground truth left out) and the pool's labels at the end."""
    miou = [float(r["test_miou"]) for r in iterations]
    accepted = [(int(r["accepted_pixels"]), float(r["accepted_accuracy"])) for r in iterations]
    judged = [(n, a) for n, a in accepted if n and a == a]
    last = iterations[-1] if iterations else {}
    best = max(miou) if miou else float("nan")
    return {
        "iterations": len(iterations),
        "final_test_miou": miou[-1] if miou else float("nan"),
        "best_test_miou": best,
        "final_over_best": miou[-1] / best if miou and best > 0 else float("nan"),
        "mean_test_miou": float(np.mean(miou)) if miou else float("nan"),
        "accepted_pixels": sum(n for n, _ in accepted),
        "accepted_accuracy": sum(n * a for n, a in judged) / sum(n for n, _ in judged)
        if judged
        else float("nan"),
        "labeled_fraction": last.get("labeled_fraction", float("nan")),
        "label_accuracy": last.get("label_accuracy", float("nan")),
    }


def effort_summary(iterations: Sequence[dict[str, Any]], target: float) -> dict[str, Any]:
    """What finishing the pool cost: human share of the pool's ground-truth pixels, strokes and
    iterations at the first iteration whose labels reached ``target`` (``None`` if none did)."""
    for row in iterations:
        if pool_finished(row, target):
            return {
                "target": target,
                "human_fraction_to_target": row["human_fraction"],
                "human_strokes_to_target": row["human_strokes"],
                "iterations_to_target": row["iteration"],
            }
    return {
        "target": target,
        "human_fraction_to_target": None,
        "human_strokes_to_target": None,
        "iterations_to_target": None,
    }


CORRECTION_SHARE = 0.005  # default budget of the corrective user: 0.5 % of the pool per iteration


def correction_budget(pool: Sequence[Sample]) -> int:
    """The corrective user's default pixels per iteration: :data:`CORRECTION_SHARE` of the
    pool's ground-truth pixels, so ten iterations can paint 5 % of the pool by hand."""
    return max(1, round(CORRECTION_SHARE * sum(int((s.truth > 0).sum()) for s in pool)))


def _default_budget(pool: Sequence[Sample], fraction: float) -> int:
    """Two median pool images' worth of strokes per iteration."""
    return max(1, round(2 * fraction * float(np.median([s.truth.size for s in pool]))))


def _rank_pool(
    config: SimulationConfig,
    preds: Sequence[Prediction],
    labels: Sequence[np.ndarray],
    prov: Sequence[np.ndarray],
    t: int,
    visited: set[tuple[int, Box]],
) -> tuple[list[tuple[int, Box, Any]], np.ndarray]:
    """Every pool item (image or tile) with its stats, and its priority under the strategy."""
    beta = config.schedule.beta(t)
    items, confs, feats = [], [], []
    for j, pred in enumerate(preds):
        human = prov[j] == PROVENANCE_HUMAN
        for part in score_tiles(pred, beta, config.background, labels[j], human, None, config.tile):
            items.append((j, part.box, part.stats))
            confs.append(part.confidence)
            feats.append(part.features)
    covered = np.array([st.human_fraction > 0 or (j, b) in visited for j, b, st in items])
    prio = priorities(
        config.strategy or "random",
        [st for _, _, st in items],
        confidences=confs,
        features=np.stack(feats),
        covered=covered,
        seed=config.seed * 7919 + t,
    )
    return items, prio


def _human_strokes(
    sample: Sample,
    labels: np.ndarray,
    prov: np.ndarray,
    box: Box,
    budget: int,
    config: SimulationConfig,
    seed: int,
) -> int:
    """The simulated human strokes one item: ``scribble_fraction`` of it (less when the budget
    is nearly spent), from the ground truth, over unlabeled or machine pixels (a person paints
    over machine labels she disagrees with; her own strokes stay). Returns the new human pixels.
    """
    r0, r1, c0, c1 = box
    truth = sample.truth[r0:r1, c0:c1]
    frac = min(config.scribble_fraction, max(budget, 1) / truth.size)
    strokes = sparse_scribbles(truth.astype(np.int64), frac, seed=seed)
    lab, pv = labels[r0:r1, c0:c1], prov[r0:r1, c0:c1]
    new = (strokes > 0) & (pv != PROVENANCE_HUMAN)
    if int(new.sum()) > budget:  # keep whole strokes, in random order, up to the budget
        comp, n = ndi.label(new, structure=np.ones((3, 3), bool))
        sizes = np.bincount(comp.ravel(), minlength=n + 1)
        keep, total = [], 0
        for c in np.random.default_rng(seed).permutation(np.arange(1, n + 1)):
            if keep and total + sizes[c] > budget:
                continue
            keep.append(c)
            total += int(sizes[c])
        new &= np.isin(comp, keep)
    lab[new] = strokes[new]
    pv[new] = PROVENANCE_HUMAN
    return int(new.sum())


def _predict_each(
    clf: Any,
    xs: Sequence[np.ndarray],
    cancel: CancelToken | None,
    done: int,
    total: int,
    prefix: str,
    keep: Callable[[Prediction], Any],
) -> Generator[Progress, None, list[Any]]:
    """Predict each normalized image of ``xs`` (progress relayed as steps ``done``… of the
    simulation); returns ``keep(prediction)`` of each, so only what is needed stays in memory."""
    out = []
    for j, x in enumerate(xs):
        pred = yield from _relay(
            predict_normalized(clf, x, cancel=cancel), done + j, total,
            f"{prefix} {j + 1}/{len(xs)} ",
        )  # fmt: skip
        out.append(keep(pred))
    return out


def _relay(job, done: int, total: int, prefix: str):
    """Re-yield a sub-job's progress as steps of the whole simulation; return its result."""
    while True:
        try:
            p = next(job)
        except StopIteration as stop:
            return stop.value
        yield Progress(done, total, prefix + p.message)


def write_report(report: dict[str, Any], out: str | Path) -> tuple[Path, Path]:
    """``OUT/report.json`` and ``OUT/curves.png`` (accuracy and labeled fraction per iteration);
    with active learning also ``OUT/difficulty.csv`` (the last ranking of the pool), with the
    corrective user ``OUT/effort.png`` (labels and mIoU against the human pixels)."""
    from napari_hitl.core.io.export import write_csv

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rpath = out / "report.json"
    rpath.write_text(json.dumps(report, indent=2, allow_nan=True))
    if report.get("difficulty"):
        write_csv(report["difficulty"], out / "difficulty.csv")
    if report["config"].get("interaction") == "correct":
        from napari_hitl.core.evaluation.effort_plot import plot_effort

        plot_effort([report], out / "effort.png")
    return rpath, plot_curves([report], out / "curves.png")
