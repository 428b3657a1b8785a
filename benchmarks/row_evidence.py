"""Could the row-position cue turn itself on? How well a pixel's height in its image alone tells
the classes of the simulated seed strokes apart on images held out.

For each set and seed, the seed images' strokes are drawn exactly as ``napari-hitl simulate``
draws them (same split, same scribbles); each image in turn is held out, a class-by-row-band
histogram (8 bands of the image height) of the other images' strokes classifies its stroke
pixels (class-balanced), and the balanced accuracy over all held-out pixels is printed beside
chance (1 / the classes scored). Reads only the seed images' masks, as the strokes do.

Usage (from the repository root, after ``benchmarks/prepare_data.py``)::

    .venv/bin/python benchmarks/row_evidence.py photos8,siftflow,sen1floods,eolearn,cloud38
"""

from __future__ import annotations

import sys

import numpy as np
from learning_ablation import CACHE, SET_OPTIONS

from napari_hitl.core.evaluation.scribbles import sparse_scribbles
from napari_hitl.core.evaluation.simulate import SimulationConfig, load_image_folder


def row_evidence(
    labels: list[np.ndarray], bins: int = 8, alpha: float = 1.0
) -> tuple[float, int] | None:
    """Balanced accuracy of the leave-one-image-out row classifier, and the classes scored."""
    per = []
    for lab in labels:
        r, c = np.nonzero(lab)
        if r.size == 0:
            continue
        b = np.minimum((r + 0.5) / lab.shape[0] * bins, bins - 1).astype(int)
        per.append((lab[r, c].astype(int), b))
    if len(per) < 2:
        return None
    K = max(int(cl.max()) for cl, _ in per) + 1
    hits = np.zeros(K)
    tot = np.zeros(K)
    for i, (cl, b) in enumerate(per):
        cnt = np.zeros((K, bins))
        for j, (cj, bj) in enumerate(per):
            if j != i:
                np.add.at(cnt, (cj, bj), 1)
        known = cnt.sum(1) > 0
        logp = np.log((cnt + alpha) / (cnt.sum(1, keepdims=True) + bins * alpha))
        logp[~known] = -np.inf
        pred = logp[:, b].argmax(0)
        m = known[cl]
        np.add.at(tot, cl[m], 1)
        np.add.at(hits, cl[m], pred[m] == cl[m])
    seen = tot > 0
    return float((hits[seen] / tot[seen]).mean()), int(seen.sum())


def main() -> None:
    """Print, per set, ``balanced accuracy/chance`` for seeds 0-4."""
    for set_name in sys.argv[1].split(","):
        _one_set(set_name)


def _one_set(set_name: str) -> None:
    opts = SET_OPTIONS[set_name]
    mi = int(opts["--max-images"]) if "--max-images" in opts else None
    samples = load_image_folder(CACHE / set_name / "images", CACHE / set_name / "masks", mi)
    out = []
    for seed in range(5):
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(samples))
        n_test = max(1, round(len(samples) * SimulationConfig().test_fraction))
        pool = [samples[i] for i in order[n_test:]]
        seeds = rng.choice(
            len(pool), size=min(int(opts["--seed-images"]), len(pool)), replace=False
        )
        labs = [
            sparse_scribbles(
                pool[j].truth.astype(np.int64),
                float(opts["--scribble-fraction"]),
                seed=seed * 1000 + int(j),
            )
            for j in seeds
        ]
        result = row_evidence(labs)
        if result is None:  # strokes in fewer than two images: nothing to hold out
            out.append("-")
            continue
        ba, k = result
        out.append(f"{ba:.3f}/{1 / k:.3f}")
    print(set_name, " ".join(out))


if __name__ == "__main__":
    main()
