"""Could a project's own strokes pick the training switches? `auto`'s image folds, scored.

``auto`` (``core/learning/auto.py``) picks a model by training each candidate on the strokes of
some images and scoring it on the strokes of the others. This script asks the same of three
training variants of the U-Net whose benchmark effect is known and differs between sets —
the draw of the default before 2026-12-06 (``image_power`` 1), that draw with
``--no-band-jitter``, and training crops spread evenly over the images (``image_power`` 0,
today's default) — on the first Train of a simulated run (the seed images
and their strokes, exactly as ``learning_ablation.py SET auto SEED`` draws them). It prints
and records the pooled and per-fold balanced accuracy of each; the simulation stops there.

Usage (from the repository root)::

    .venv/bin/python benchmarks/switch_folds.py SET SEED

One JSON line per run goes to ``benchmarks/results/learning/switch_folds.jsonl``.
"""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import replace
from pathlib import Path

import learning_ablation as la
import numpy as np
import torch

from napari_hitl.core.evaluation import simulate as sim
from napari_hitl.core.evaluation.metrics import balanced_accuracy, confusion
from napari_hitl.core.learning import auto
from napari_hitl.core.learning.registry import make_classifier
from napari_hitl.core.progress import run_to_end

RESULTS = Path(__file__).resolve().parent / "results" / "learning" / "switch_folds.jsonl"
VARIANTS = {  # TrainConfig fields of each variant
    "pixels": {"image_power": 1.0},
    "nojit": {"image_power": 1.0, "band_jitter": False},
    "images": {"image_power": 0.0},
}


class _Scored(Exception):
    """Raised once the folds are scored: the simulation has nothing more to do."""


def _score(set_name: str, seed: int):
    def folds_only(images, config, norm, values, names, cancel=None):
        method, folds = auto.stroke_folds(images, config.seed)
        base = replace(config, holdout_fraction=0.0, novelty_gate=0.0, tta=False, time_budget=None)
        k = len(values)
        row = {"set": set_name, "seed": seed, "method": method, "folds": len(folds)}
        for name, fields in VARIANTS.items():
            cfg = replace(base, **fields)
            pooled = np.zeros((k + 1, k + 1), np.int64)
            per_fold = []
            for train, score in folds:  # as auto.choose_model scores a candidate
                trained = auto._trained_classes(train, k)
                held = [(im, auto._human(im) & trained[np.maximum(im.target, 0)]) for im in score]
                held = [(im, m) for im, m in held if m.any()]
                if trained.sum() < 2 or not held:
                    continue
                clf = make_classifier("unet", norm, values, names)
                run_to_end(clf.fit(train, cfg, cancel))
                cm = sum(
                    confusion(clf.logits(im.x).argmax(0)[m] + 1, im.target[m] + 1, k)
                    for im, m in held
                )
                pooled += cm
                per_fold.append(round(balanced_accuracy(cm), 4))
            pooled_score = round(balanced_accuracy(pooled), 4)
            row[name] = {"balanced_accuracy": pooled_score, "folds": per_fold}
            print(name, row[name], flush=True)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with RESULTS.open("a") as f:
            f.write(json.dumps(row) + "\n")
        raise _Scored
        yield  # a generator, as auto_classifier is

    return folds_only


def main() -> None:
    """Score the variants on one set and seed's first strokes."""
    set_name, seed = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(1)
    samples, cfg = la.setup(set_name, "auto", seed, 1)
    sim.auto_classifier = _score(set_name, seed)
    with contextlib.suppress(_Scored):
        run_to_end(sim.simulate(samples, cfg))


if __name__ == "__main__":
    main()
