"""Which classes the simulated user's loop pushes into the pool, and how many of them are right.

A diagnostic beside ``learning_ablation.py``: the same simulate run (interaction none, the set's
options from ``run_simulations.SET_OPTIONS``, the default U-Net, one thread), with ``push``
wrapped so that every accepted pixel is scored against the pool's ground truth per class.

Usage (from the repository root, after ``benchmarks/prepare_data.py``)::

    .venv/bin/python benchmarks/pushed_classes.py SET SEED [ITERATIONS] [PREFIX]

``PREFIX`` ``mnorm-`` runs it under ``learning_ablation.py``'s probe of the same name.
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from learning_ablation import CACHE, _install_machine_class_norm  # noqa: E402
from run_simulations import SET_OPTIONS  # noqa: E402


def main(set_name: str, seed: int, iterations: int = 3, prefix: str = "") -> None:
    """Print, per iteration, the pixels pushed and the share right, by class (largest first)."""
    import torch

    from napari_hitl.core.evaluation import simulate as sim
    from napari_hitl.core.evaluation.simulate import SimulationConfig, load_image_folder, simulate
    from napari_hitl.core.learning.config import TrainConfig
    from napari_hitl.core.progress import run_to_end

    torch.set_num_threads(1)
    if prefix == "mnorm-":
        _install_machine_class_norm()
    opts = SET_OPTIONS[set_name]
    mi = int(opts["--max-images"]) if "--max-images" in opts else None
    samples = load_image_folder(CACHE / set_name / "images", CACHE / set_name / "masks", mi)
    truth = {s.name: s.truth for s in samples}
    plain_push = sim.push
    records: dict[int, list] = collections.defaultdict(list)

    def push(labels, provenance, predicted, accept, iteration):
        out = plain_push(labels, provenance, predicted, accept, iteration)
        records[iteration].append(out[2])  # in pool order, one call per pool image
        return out

    sim.push = push
    cfg = SimulationConfig(
        model="unet",
        iterations=iterations,
        seed=seed,
        seed_images=int(opts["--seed-images"]),
        scribble_fraction=float(opts["--scribble-fraction"]),
        max_images=mi,
        train=TrainConfig(model="unet", seed=seed, threads=1, calibration="brier"),
    )
    report = run_to_end(simulate(samples, cfg))
    pool = report["config"]["pool"]
    for it, recs in sorted(records.items()):
        pushed, right = collections.Counter(), collections.Counter()
        for name, rec in zip(pool, recs, strict=True):
            gt = truth[name].ravel()[rec.index]
            values, gt = np.asarray(rec.values)[gt > 0], gt[gt > 0]
            for c in np.unique(values):
                sel = values == c
                pushed[int(c)] += int(sel.sum())
                right[int(c)] += int((gt[sel] == c).sum())
        total = sum(pushed.values())
        print(f"iteration {it}: {total} px pushed, {sum(right.values()) / max(total, 1):.3f} right")
        for c, n in pushed.most_common(5):
            print(f"  class {c}: {n} px, {right[c] / n:.3f} right")


if __name__ == "__main__":
    a = sys.argv[1:]
    main(a[0], int(a[1]), int(a[2]) if len(a) > 2 else 3, a[3] if len(a) > 3 else "")
