"""What the loop's first model gets right, stroke by stroke and tile by tile.

Runs the first iterations of ``learning_ablation.py``'s simulated loop for one set, variant and
seed, and after every Train prints the temperature, the share of held-out strokes it gets
right, each class's recall on the training strokes and on the held-out strokes, and the share
of the stroked images' pixels it gives each class; after the first Train also every image's
recall and precision per class against its ground truth (a diagnosis of a failed first model,
e.g. sen1floods seed 5: strokes 99–100 % right, water recall 0.2 on the other tiles).

Usage (from the repository root, after ``benchmarks/prepare_data.py``)::

    .venv/bin/python -u benchmarks/first_model.py SET VARIANT SEED [ITERATIONS]

e.g. ``benchmarks/first_model.py sen1floods p8b32s320w160-brier 5 1``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import learning_ablation as la


def _recall(hits: np.ndarray) -> list[str]:
    return [f"{a / max(b, 1):.2f} ({int(b)} px)" for a, b in hits]


def install(samples: list) -> None:
    """Wrap the networks' calibration so that each Train reports as described above."""
    from napari_hitl.core.evaluation.metrics import confusion
    from napari_hitl.core.learning import net as net_module
    from napari_hitl.core.learning.data import human_mask

    plain = net_module.calibrate
    trains = [0]

    def calibrate(clf, images, held, report, objective="nll"):
        plain(clf, images, held, report, objective)
        trains[0] += 1
        k = len(clf.class_values)
        held_by_image: dict[int, list[np.ndarray]] = {}
        for i, flat in held:
            held_by_image.setdefault(i, []).append(flat)
        train_hits, held_hits, share = np.zeros((k, 2)), np.zeros((k, 2)), np.zeros(k)
        for i, im in enumerate(images):
            pred = np.argmax(clf.logits(im.x), 0).ravel()
            target = im.target.ravel()
            share += np.bincount(pred, minlength=k)
            human = human_mask(im).ravel() & (target >= 0)
            is_held = np.zeros_like(human)
            for flat in held_by_image.get(i, []):
                is_held[flat] = True
            for c in range(k):
                tr, he = human & ~is_held & (target == c), is_held & (target == c)
                train_hits[c] += [np.sum(pred[tr] == c), tr.sum()]
                held_hits[c] += [np.sum(pred[he] == c), he.sum()]
        print(
            f"Train {trains[0]}: temperature {clf.temperature:.3f}, held-out strokes right "
            f"{report.holdout_accuracy}, class recall on training strokes "
            f"{_recall(train_hits)}, on held-out strokes {_recall(held_hits)}, predicted "
            f"shares on the stroked images {np.round(share / share.sum(), 3).tolist()}",
            flush=True,
        )
        if trains[0] > 1:
            return
        for s in samples:
            pred = np.argmax(clf.logits(clf.normalization.apply(s.bands)), 0)
            cm = confusion(pred + 1, s.truth, k)[1:, 1:]  # class values 1..k, 0: no truth
            print(
                f"  {s.name}: truth shares {np.round(cm.sum(1) / cm.sum(), 3).tolist()}, "
                f"recall {np.round(np.diag(cm) / np.maximum(cm.sum(1), 1), 2).tolist()}, "
                f"precision {np.round(np.diag(cm) / np.maximum(cm.sum(0), 1), 2).tolist()}"
            )

    net_module.calibrate = calibrate


def main() -> None:
    """Run the loop's first iterations with the report installed."""
    import torch

    from napari_hitl.core.evaluation.simulate import simulate
    from napari_hitl.core.progress import run_to_end

    args = sys.argv[1:]
    if len(args) < 3:
        sys.exit(__doc__)
    torch.set_num_threads(1)
    samples, cfg = la.setup(args[0], args[1], int(args[2]), int(args[3]) if len(args) > 3 else 1)
    install(samples)
    report = run_to_end(simulate(samples, cfg))
    print("test mIoU per iteration:", [round(r["test_miou"], 4) for r in report["iterations"]])


if __name__ == "__main__":
    main()
