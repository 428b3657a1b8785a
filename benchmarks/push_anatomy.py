"""Where the loop's wrong pushes come from: class, confidence, iteration, image.

Runs one simulated-user run of ``benchmarks/learning_ablation.py`` (same sets, variants and
seeds) and sorts every accepted pixel with ground truth by the class it was given, by its
calibrated confidence, by the iteration that pushed it and by its image (seed images marked
``S``), with the share that was right. It also prints the share of the pool's pixels whose true
class no seed image shows (no push can label those right) and how well an image's distance to
the nearest seed image, in the description :mod:`napari_hitl.core.active.first_images` gives
of it, ranks its pushes' accuracy (Spearman's ρ over the other pool images).

Usage (from the repository root, after ``benchmarks/prepare_data.py``)::

    .venv/bin/python -u benchmarks/push_anatomy.py SET VARIANT [SEED] [ITERATIONS]

e.g. ``benchmarks/push_anatomy.py houston p8b32s320w160-brier 0`` (the default; one thread).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))
import learning_ablation

from napari_hitl.core.evaluation import simulate as sim
from napari_hitl.core.progress import run_to_end

BINS = (0.95, 0.98, 0.995, 0.999, 0.9999, 1.01)


def _looks_against_accuracy(pool: list, seeds: set[str], per_image: dict) -> float:
    """Spearman's ρ between a non-seed pool image's distance to the nearest seed image (in
    ``first_images``' standardized description) and the share of its pushes that were right."""
    from napari_hitl.core.active.first_images import described
    from napari_hitl.core.learning.data import normalization_from_bands

    norm = normalization_from_bands([s.bands for s in pool])  # what the run's model had
    features = described([norm.apply(s.bands) for s in pool])
    is_seed = np.array([s.name in seeds for s in pool])
    d = np.linalg.norm(features[:, None] - features[None, is_seed], axis=2).min(1)
    rows = [
        (d[i], per_image[s.name][1] / per_image[s.name][0])
        for i, s in enumerate(pool)
        if not is_seed[i] and per_image.get(s.name, [0])[0]
    ]
    distance, right = zip(*rows, strict=True)
    return float(spearmanr(distance, right).statistic)  # ties share their mean rank


def main() -> None:
    """Run the simulation with the push recorded and print its anatomy."""
    set_name, variant = sys.argv[1], sys.argv[2]
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    iterations = int(sys.argv[4]) if len(sys.argv) > 4 else 10
    samples, config = learning_ablation.setup(set_name, variant, seed, iterations)
    config.train.threads = 1
    confidences: list[np.ndarray] = []
    pushes: list[tuple[np.ndarray, np.ndarray, int]] = []
    accept_mask, push = sim.accept_mask, sim.push

    def recording_accept(confidence, *args, **kwargs):
        confidences.append(confidence)
        return accept_mask(confidence, *args, **kwargs)

    def recording_push(labels, provenance, predicted, accepted, iteration):
        pushes.append((accepted.copy(), predicted, iteration))
        return push(labels, provenance, predicted, accepted, iteration)

    sim.accept_mask, sim.push = recording_accept, recording_push
    report = run_to_end(sim.simulate(samples, config))
    pool = report["config"]["pool"]
    seeds = set(report["config"]["seed_image_names"])
    by_name = {s.name: s for s in samples}
    k = max(report["config"]["classes"])
    per_class = np.zeros((k + 1, 2))
    per_bin = np.zeros((len(BINS) - 1, 2))
    per_iteration: dict[int, list[int]] = {}
    per_image: dict[str, list[int]] = {}
    for call, (confidence, (accepted, predicted, it)) in enumerate(
        zip(confidences, pushes, strict=True)
    ):
        name = pool[call % len(pool)]  # every iteration pushes into the pool in its order
        truth = by_name[name].truth
        judged = accepted & (truth > 0)
        right = predicted[judged] == truth[judged]
        for c in range(1, k + 1):
            given = predicted[judged] == c
            per_class[c] += (given.sum(), right[given].sum())
        b = np.digitize(confidence[judged], BINS) - 1
        for i in range(len(BINS) - 1):
            per_bin[i] += ((b == i).sum(), right[b == i].sum())
        for table, key in ((per_iteration, it), (per_image, name)):
            row = table.setdefault(key, [0, 0])
            row[0] += int(judged.sum())
            row[1] += int(right.sum())
    truth = np.concatenate([by_name[n].truth.ravel() for n in pool])
    truth = truth[truth > 0]
    shown = set()
    for n in seeds:
        shown |= set(np.unique(by_name[n].truth).tolist()) - {0}
    print(
        f"{set_name} {variant} seed {seed}: final test mIoU "
        f"{report['iterations'][-1]['test_miou']:.3f}; "
        f"pool pixels of a class no seed image shows: {1 - np.isin(truth, list(shown)).mean():.3f}"
    )
    total = sum(n for n, _ in per_iteration.values())
    right_total = sum(r for _, r in per_iteration.values())
    print(f"pushed {total} pixels with ground truth, {right_total / max(total, 1):.3f} right")
    print("class given: pushed, right, the class's share of the pool")
    for c in range(1, k + 1):
        if per_class[c, 0]:
            print(
                f"  {c}: {int(per_class[c, 0])} {per_class[c, 1] / per_class[c, 0]:.3f} "
                f"{np.mean(truth == c):.3f}"
            )
    print("confidence: pushed, right")
    for i in range(len(BINS) - 1):
        if per_bin[i, 0]:
            n, r = per_bin[i]
            print(f"  [{BINS[i]}, {BINS[i + 1]}): {int(n)} {r / n:.3f}")
    print("iteration: pushed, right")
    for it, (n, r) in sorted(per_iteration.items()):
        print(f"  {it}: {n} {r / max(n, 1):.3f}")
    rho = _looks_against_accuracy([by_name[n] for n in pool], seeds, per_image)
    print(f"distance to the nearest seed image against the image's pushes right: rho {rho:+.3f}")
    print("image (S: a seed image): pushed, right")
    for name, (n, r) in sorted(per_image.items(), key=lambda kv: -kv[1][0]):
        if n:
            print(f"  {'S' if name in seeds else ' '} {name}: {n} {r / n:.3f}")


if __name__ == "__main__":
    main()
