"""Why the README demo's test mIoU does not rise every iteration: its loop under probes.

The demo (``napari_hitl.demo.run_sample_loop``) runs 14 iterations of the corrective simulated
user on eight 256² sample scenes (three seeded, two kept for testing). This script runs the same
loop with one thread and one change, and prints the test mIoU of every iteration, how many
iterations fall below the one before (``dips``), the mean over iterations 2–14 and the labeled
fraction. One JSON line per run goes to ``benchmarks/results/demo_swing.jsonl``.

Usage (from the repository root)::

    .venv/bin/python benchmarks/demo_swing.py NAME [--train JSON] [--scenes N]
        [--prior-scale F] [--prior-from human|all] [--members N] [--extra-scenes N]

``--train``: ``TrainConfig`` fields, e.g. ``'{"warm_steps": 320, "steps": 320}'`` or
``'{"precise_bn": true}'``; ``--scenes N``: the scenes' seeds start at 100 + N (the demo's own
are N = 0); ``--prior-scale``: the U-Net's class log prior times F; ``--prior-from all``: the
prior counts every labeled pixel, machine-accepted ones too, instead of the human pixels only;
``--members N``: N U-Nets of their own seeds, averaged (``learning_ablation.py``'s ``deep<N>-``);
``--extra-scenes N``: each iteration's model is also scored on N more scenes (seeds 300, 301,
…), which the loop never sees — is the swing the two test scenes' or the model's?
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np

from napari_hitl.core.evaluation.simulate import simulate
from napari_hitl.core.learning import net as net_module
from napari_hitl.core.learning.net import TrainConfig
from napari_hitl.core.progress import run_to_end
from napari_hitl.demo import sample_loop_inputs

RESULTS = Path(__file__).resolve().parent / "results" / "demo_swing.jsonl"


def _all_label_counts(
    images: list, human: list, k: int
) -> np.ndarray:  # the probe's human_class_counts
    counts = np.zeros(k)
    for im in images:
        counts += np.bincount(im.target[im.target >= 0], minlength=k)[:k]
    return counts


def _install_extra_scoring(n: int) -> list[float]:
    """Score every iteration's model on ``n`` more sample scenes; returns the list it fills."""
    from napari_hitl.core.evaluation import simulate as sim
    from napari_hitl.core.evaluation.metrics import confusion, scores
    from napari_hitl.core.learning.prediction import predict_normalized
    from napari_hitl.core.sample.scene import make_sample_scene

    scenes = [make_sample_scene((256, 256), seed=300 + i) for i in range(n)]
    truth = np.concatenate([sc.ground_truth.astype(np.int64).ravel() for sc in scenes])
    extra: list[float] = []
    plain = sim._predict_each

    def predict_each(clf, xs, cancel, done, total, prefix, keep):
        out = yield from plain(clf, xs, cancel, done, total, prefix, keep)
        if "test" in prefix:  # once per iteration, after its test scenes
            preds = []
            for sc in scenes:
                p = run_to_end(predict_normalized(clf, clf.normalization.apply(sc.bands)))
                preds.append(p.labels.astype(np.int64).ravel())
            cm = confusion(np.concatenate(preds), truth, 5)
            extra.append(round(scores(cm)["miou"], 3))
        return out

    sim._predict_each = predict_each
    return extra


def _extra_row(scores: list[float] | None) -> dict:
    if scores is None:
        return {}
    return {
        "extra_miou": scores,
        "extra_dips": sum(b < a for a, b in itertools.pairwise(scores)),
    }


def main() -> None:
    """Run the demo's loop once with the options given and record it."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name")
    ap.add_argument("--train", default="{}", help="TrainConfig fields as JSON")
    ap.add_argument("--scenes", type=int, default=0, help="scene seeds start at 100 + N")
    ap.add_argument("--prior-scale", type=float, default=1.0)
    ap.add_argument("--prior-from", choices=("human", "all"), default="human")
    ap.add_argument("--members", type=int, default=1, help="U-Nets averaged (deep ensemble)")
    ap.add_argument("--extra-scenes", type=int, default=0, help="also score on N more scenes")
    args = ap.parse_args()
    extra = _install_extra_scoring(args.extra_scenes) if args.extra_scenes else None
    if args.members > 1:
        from learning_ablation import _install_deep_ensemble

        _install_deep_ensemble(args.members)
    if args.prior_scale != 1.0:
        original = net_module.class_log_prior
        f = args.prior_scale
        net_module.class_log_prior = lambda c, s=1.0: (f * original(c, s)).astype(np.float32)
    if args.prior_from == "all":
        net_module.human_class_counts = _all_label_counts
    train = TrainConfig(threads=1, **json.loads(args.train))
    samples, cfg = sample_loop_inputs(first_seed=100 + args.scenes, train=train)
    t0 = time.perf_counter()
    report = run_to_end(simulate(samples, cfg))
    miou = [round(it["test_miou"], 3) for it in report["iterations"]]
    row = {
        "name": args.name,
        "train": json.loads(args.train),
        "scenes": args.scenes,
        "prior_scale": args.prior_scale,
        "prior_from": args.prior_from,
        "members": args.members,
        "miou": miou,
        **_extra_row(extra),
        "dips": sum(b < a for a, b in itertools.pairwise(miou)),
        "mean_2_14": round(float(np.mean(miou[1:])), 4),
        "labeled": round(report["iterations"][-1]["labeled_fraction"], 3),
        "label_accuracy": round(report["iterations"][-1]["label_accuracy"], 4),
        "wall_s": round(time.perf_counter() - t0),
    }
    print(json.dumps(row))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
