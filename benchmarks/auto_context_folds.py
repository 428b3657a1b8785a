"""How right are the forest channels of the ``ac-`` probe: the out-of-fold ones the U-Net trains
on (each stroked image's, from the forest of the other folds) against the all-strokes forest's
on the same images? One simulated first Train; reads the ground truth, so it is an analysis,
not a benchmark score (docs/learning-log.md, "Twenty-sixth session").

Usage (from the repository root, after ``benchmarks/prepare_data.py``)::

    .venv/bin/python benchmarks/auto_context_folds.py dsb2018 1
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import learning_ablation as la
import probe_auto_context as pac


def main(set_name: str, seed: int) -> None:
    """Print each stroked image's pixel accuracy under both forests (first Train)."""
    from napari_hitl.core.evaluation.simulate import simulate
    from napari_hitl.core.progress import run_to_end

    samples, cfg = la.setup(set_name, "ac-", seed, 1)
    truth = {s.name: s.truth for s in samples}
    values = np.asarray(sorted({int(v) for s in samples for v in np.unique(s.truth) if v > 0}))
    plain_fit, rows = pac.AutoContext.fit, []

    def accuracy(p: np.ndarray, name: str) -> float:
        t = truth[name]
        return float((values[p.argmax(0)] == t)[t > 0].mean())

    def fit(self, images, config, cancel=None):
        out = yield from plain_fit(self, images, config, cancel)
        for i, fold in sorted(self.fold_of.items()):  # the forests the U-Net's channels came from
            im = images[i]
            oof = self.probabilities(im.x, self.fold_forests[fold])
            rows.append(
                (im.name, accuracy(oof, im.name), accuracy(self.probabilities(im.x), im.name))
            )
        return out

    pac.AutoContext.fit = fit
    run_to_end(simulate(samples, cfg))
    print("stroked image | out-of-fold forest right | all-strokes forest right")
    for name, oof, full in rows:
        print(f"{name[:30]:30s} {oof:.3f} {full:.3f}")
    print(f"mean {np.mean([r[1] for r in rows]):.3f} {np.mean([r[2] for r in rows]):.3f}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0)
