"""Which classes the simulated user's loop pushes into the pool, and how many of them are right.

A diagnostic beside ``learning_ablation.py``: the same simulate run as its ``VARIANT`` (default
the default U-Net, ``p8b32s320w160-brier``; its probes, e.g. ``mnorm-p16b16s160w160-brier``,
work here too, ``ssl-`` excepted), one thread, with ``push`` wrapped so that every accepted pixel
is scored against the pool's ground truth per class. Nothing is written to the results file.

Usage (from the repository root, after ``benchmarks/prepare_data.py``)::

    .venv/bin/python benchmarks/pushed_classes.py SET SEED [ITERATIONS] [VARIANT]
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from learning_ablation import setup  # noqa: E402

DEFAULT_VARIANT = "p8b32s320w160-brier"


def main(set_name: str, seed: int, iterations: int = 3, variant: str = DEFAULT_VARIANT) -> None:
    """Print, per iteration, the pixels pushed and the share right, by class (largest first)."""
    import torch

    from napari_hitl.core.evaluation import simulate as sim
    from napari_hitl.core.progress import run_to_end

    if variant.startswith("ssl-"):
        raise SystemExit("pushed_classes.py: the ssl- probe runs in learning_ablation.py only")
    torch.set_num_threads(1)
    samples, cfg = setup(set_name, variant, seed, iterations)
    truth = {s.name: s.truth for s in samples}
    plain_push = sim.push
    records: dict[int, list] = collections.defaultdict(list)

    def push(labels, provenance, predicted, accept, iteration):
        out = plain_push(labels, provenance, predicted, accept, iteration)
        records[iteration].append(out[2])  # in pool order, one call per pool image
        return out

    sim.push = push
    report = run_to_end(sim.simulate(samples, cfg))
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
    main(a[0], int(a[1]), int(a[2]) if len(a) > 2 else 3, a[3] if len(a) > 3 else DEFAULT_VARIANT)
