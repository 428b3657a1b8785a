"""The boundary band of each benchmark set: ground-truth pixels the corrective person never paints.

Usage (from the repository root, after ``benchmarks/prepare_data.py``)::

    .venv/bin/python benchmarks/boundary_band.py [--sets sen1floods,eolearn,...]

The corrective simulated user (:mod:`napari_hitl.core.evaluation.corrective`) paints only pixels
at least :data:`~napari_hitl.core.evaluation.corrective.MIN_DEPTH` inside their true class, so a
pixel next to another value, mask 0 or the image border is left to the model. This prints, per
set (the images ``run_simulations.py`` uses), the share of ground-truth pixels in that band — see
docs/benchmarks.md, "The boundary band".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_simulations import SET_OPTIONS

CACHE = Path("~/.cache/napari-hitl/bench-data").expanduser()
SETS = ("sen1floods", "eolearn", "houston", "cloud38", "dsb2018", "siftflow")


def band_share(truths: list[np.ndarray], depth: int) -> float:
    """Share of the pixels with ground truth (> 0) closer than ``depth`` to another value (mask 0
    and the image border count as another value, as for the corrective person)."""
    total = shallow = 0
    for t in truths:
        for v in np.unique(t[t > 0]):
            m = t == v
            inside = ndi.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]
            total += int(m.sum())
            shallow += int((m & (inside < depth)).sum())
    return shallow / max(total, 1)


def main() -> None:
    """Print the table."""
    from napari_hitl.core.evaluation.corrective import MIN_DEPTH
    from napari_hitl.core.evaluation.simulate import load_image_folder

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default=",".join(SETS))
    args = ap.parse_args()
    print("| set | images | ground-truth pixels next to another value |")
    print("|---|---:|---:|")
    for name in args.sets.split(","):
        opts = SET_OPTIONS[name]
        mi = int(opts["--max-images"]) if "--max-images" in opts else None
        samples = load_image_folder(CACHE / name / "images", CACHE / name / "masks", mi)
        share = band_share([s.truth for s in samples], MIN_DEPTH)
        print(f"| {name} | {len(samples)} | {100 * share:.1f} % |")


if __name__ == "__main__":
    main()
