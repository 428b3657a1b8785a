"""How long does test-time guiding take? Guide a trained model on a 512² 15-band image.

Usage (from the repository root; results in docs/benchmarks.md, "Test-time guiding")::

    .venv/bin/python -u benchmarks/hint_guide_speed.py            # ~1 min
    .venv/bin/python -u benchmarks/hint_guide_speed.py --size 1024 --repeats 3

Trains the default U-Net (and the patch CNN) on sparse scribbles of a sample scene, then times,
for 1, 5 and 20 clicked hints and for one ``find`` command: the guide's optimization (30 steps
of momentum gradient descent on α, β, γ, head computed once) and the guided prediction of the
whole image. Baseline measured in the same run: one plain prediction of the image by the
classifier (``predict_normalized``), so the ratios say what guiding costs next to an ordinary
inference on this machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from napari_hitl.core.evaluation.scribbles import sparse_scribbles
from napari_hitl.core.hints.commands import COMMAND_LR, command_hints, parse_command
from napari_hitl.core.hints.guide import GuideConfig, Hints, ImageGuide
from napari_hitl.core.learning.data import LabeledImage, Normalization
from napari_hitl.core.learning.net import NetClassifier, TrainConfig
from napari_hitl.core.learning.prediction import predict_normalized
from napari_hitl.core.progress import run_to_end
from napari_hitl.core.sample.scene import make_sample_scene


def _timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    """Run the benchmark and print a Markdown table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    scene = make_sample_scene((args.size, args.size), seed=0)
    bands, truth = scene.bands, scene.ground_truth.astype(np.int64)
    values = sorted(int(v) for v in np.unique(truth) if v > 0)
    names = [f"class {v}" for v in values]
    lo = np.percentile(bands, 1, axis=(1, 2))
    hi = np.percentile(bands, 99, axis=(1, 2))
    norm = Normalization([f"b{i}" for i in range(bands.shape[0])], lo.tolist(), hi.tolist())
    x = norm.apply(bands)
    scrib = sparse_scribbles(truth, 0.01, seed=0)
    target = np.where(scrib > 0, np.searchsorted(values, scrib), -1)
    img = LabeledImage("s", x, target, (target >= 0).astype(np.float32), {"human": target >= 0})
    rng = np.random.default_rng(0)
    print(f"{args.size}² image, {bands.shape[0]} bands, {args.threads} threads, "
          f"{args.steps} steps, median of {args.repeats}")  # fmt: skip
    print()
    print("| model | hints | steps | guide (s) | guided prediction (s) | plain prediction (s) | "
          "(guide + guided prediction) / plain |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for kind in ("unet", "patch-cnn"):
        clf = NetClassifier(kind, norm, values, names)
        run_to_end(clf.fit([img], TrainConfig(model=kind, steps=40 if kind == "unet" else 150)))
        plain_s = _timed(lambda clf=clf: run_to_end(predict_normalized(clf, x)), args.repeats)
        guide = ImageGuide(clf, x)
        pred = run_to_end(guide.predict_job())
        cases: list[tuple[str, Hints]] = []
        for n in (1, 5, 20):
            r = rng.integers(0, args.size, n)
            c = rng.integers(0, args.size, n)
            cases.append((f"{n} click(s)", Hints.points(r, c, rng.integers(0, len(values), n))))
        cmd = parse_command(f"find {names[-1]} in top left", names, values)
        cases.append((f"'{cmd.describe()}'",
                      command_hints([cmd], pred.labels, pred.probabilities, values)))  # fmt: skip
        cases.append((f"{cases[2][0]}, all steps", cases[2][1]))
        for label, hints in cases:
            config = GuideConfig(
                steps=args.steps,
                lr=COMMAND_LR if label.startswith("'") else None,
                stop_when_satisfied="all steps" not in label,
            )
            steps = []

            def fit(hints=hints, guide=guide, config=config, steps=steps) -> None:
                guide.reset()
                steps.append(run_to_end(guide.fit_job(hints, config)).steps)

            fit_s = _timed(fit, args.repeats)
            pred_s = _timed(lambda guide=guide: run_to_end(guide.predict_job()), args.repeats)
            ratio = (fit_s + pred_s) / plain_s
            print(f"| {kind} | {label} ({len(hints)} px) | {steps[-1]} | {fit_s:.3f} | "
                  f"{pred_s:.3f} | {plain_s:.3f} | {ratio:.2f}× |")  # fmt: skip


if __name__ == "__main__":
    main()
