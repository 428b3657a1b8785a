"""The corrective simulated user: after each iteration she paints over what is wrong or missing.

A person using the Learning loop widget trains, infers, adds the confident predictions, then looks
at the labels and paints where they are wrong (a machine label of another class) or still missing
(no label), the biggest mistakes first, until her patience for the iteration — the budget in
pixels — is spent. :func:`correct_pool` does that against the ground truth:

- the errors of an image are the pixels with ground truth whose label differs from it and that are
  not the person's own (her strokes are right by construction); they are split into 8-connected
  regions per true class;
- regions are visited largest first across the pool (or item by item in a given order, largest
  first inside each item), one stroke per region and pass, for up to :data:`MAX_PASSES` passes;
- a stroke is a smooth brush path (radius 0–2 px, 8–40 steps, slightly curved, like
  :func:`~napari_hitl.core.sample.scene.sparse_scribbles`) through the middle of the region. Its
  pixels
  lie inside the region and at least 1 px inside the true class (a pixel next to another value,
  or to mask 0, is never painted), so strokes never touch mask-0 pixels nor the person's own labels;
- the last stroke stops mid-way when the budget runs out, so the pixels counted are the pixels
  spent.

Painted pixels become human labels of the true class; a stroke over a wrong machine label counts as
effort like any other (``over_machine`` reports how many). The person never erases.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from napari_hitl.core.evaluation.scribbles import brush_disk
from napari_hitl.core.loop.history import EIGHT, count_strokes
from napari_hitl.core.store import PROVENANCE_HUMAN
from napari_hitl.core.tiling import Box

MAX_PASSES = 3  # passes over the error regions within one iteration's budget
MIN_DEPTH = 2  # stroke pixels lie at least this Euclidean distance inside the true class
_DISKS = {r: brush_disk(r) for r in (0, 1, 2)}  # the scribble simulator's brushes


@dataclass
class Correction:
    """What one round of corrections cost and did."""

    pixels: int = 0  # human pixels painted
    strokes: int = 0  # strokes (each paints at least one pixel)
    over_machine: int = 0  # painted pixels that held a wrong machine label
    regions: int = 0  # error regions that received a stroke


@dataclass
class _Region:
    image: int
    value: int
    origin: tuple[int, int]  # top-left of ``mask`` in the image
    mask: np.ndarray  # bool, the region's bounding box
    size: int


def human_strokes(labels: np.ndarray, provenance: np.ndarray) -> int:
    """Strokes in a label image: 8-connected components of human pixels, per class.

    Strokes of one class that touch count once — the count of the seed scribbles, which come
    as a map rather than as a list of strokes; counted as a project's history counts them.
    """
    return count_strokes(labels, provenance == PROVENANCE_HUMAN)


def error_mask(truth: np.ndarray, labels: np.ndarray, provenance: np.ndarray) -> np.ndarray:
    """Pixels with ground truth whose label is missing or wrong (never the person's own)."""
    return (truth > 0) & (labels != truth) & (provenance != PROVENANCE_HUMAN)


def _regions(
    j: int, truth: np.ndarray, labels: np.ndarray, prov: np.ndarray, box: Box | None
) -> list[_Region]:
    r0, r1, c0, c1 = box if box is not None else (0, truth.shape[0], 0, truth.shape[1])
    t = truth[r0:r1, c0:c1]
    wrong = error_mask(t, labels[r0:r1, c0:c1], prov[r0:r1, c0:c1])
    out = []
    for c in np.unique(t[wrong]):
        comp, _ = ndi.label(wrong & (t == c), structure=EIGHT)
        for i, sl in enumerate(ndi.find_objects(comp), start=1):
            if sl is None:
                continue
            mask = comp[sl] == i
            out.append(
                _Region(j, int(c), (sl[0].start + r0, sl[1].start + c0), mask, int(mask.sum()))
            )
    return out


def _depth(truth: np.ndarray, value: int) -> np.ndarray:
    """Euclidean distance of each pixel of class ``value`` to the nearest pixel of another value
    (mask 0 and the image border count as another value)."""
    return ndi.distance_transform_edt(np.pad(truth == value, 1))[1:-1, 1:-1]


def _stroke_path(
    region: np.ndarray, depth: np.ndarray, rng: np.random.Generator
) -> list[tuple[int, int]]:
    """Pixels of one stroke through ``region`` (local coordinates), in painting order."""
    paintable = region & (depth >= MIN_DEPTH)
    if not paintable.any():
        return []
    for r in (2, 1, 0):  # the widest brush that fits
        centres = paintable & (depth >= MIN_DEPTH + r)
        if centres.any():
            break
    # start in the middle of the region: weight by the distance to the region's edge
    inner = ndi.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    cand = np.flatnonzero(centres)
    w = inner.ravel()[cand] ** 2
    start = int(cand[rng.choice(cand.size, p=w / w.sum())])
    h, wd = region.shape
    brush = _DISKS[r]
    best: list[tuple[int, int]] = []
    for _ in range(3):  # a person picks the direction the region extends in: keep the longest
        theta = rng.uniform(0, 2 * np.pi)
        y, x = float(start // wd), float(start % wd)
        seen: set[tuple[int, int]] = set()
        path: list[tuple[int, int]] = []
        for _step in range(int(rng.integers(8, 41))):
            iy, ix = round(y), round(x)
            if not (0 <= iy < h and 0 <= ix < wd) or not centres[iy, ix]:
                break
            for dy, dx in zip(*np.nonzero(brush), strict=True):
                py, px = iy + int(dy) - r, ix + int(dx) - r
                if 0 <= py < h and 0 <= px < wd and paintable[py, px] and (py, px) not in seen:
                    seen.add((py, px))
                    path.append((py, px))
            theta += rng.normal(0, 0.15)
            y += np.sin(theta)
            x += np.cos(theta)
        if len(path) > len(best):
            best = path
    return best


def correct_pool(
    truths: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    provenance: Sequence[np.ndarray],
    budget: int,
    rng: np.random.Generator,
    order: Sequence[tuple[int, Box | None]] | None = None,
) -> Correction:
    """Paint corrective strokes into ``labels``/``provenance`` (in place) until ``budget`` pixels.

    Parameters
    ----------
    truths, labels, provenance
        Per pool image: ground truth (0 = none), current labels and their provenance.
    budget
        Human pixels to spend (> 0).
    rng
        Random generator of the strokes' shapes.
    order
        Items to visit in this order, ``(image index, box or None)``, largest error region
        first inside each item; ``None`` visits the whole pool's regions largest first.

    Returns
    -------
    Correction
        Pixels, strokes, pixels painted over wrong machine labels, regions stroked.
    """
    if budget <= 0:
        raise ValueError(f"the correction budget must be > 0 pixels, got {budget}")
    if order is None:
        regions = [
            reg
            for j in range(len(truths))
            for reg in _regions(j, truths[j], labels[j], provenance[j], None)
        ]
        regions.sort(key=lambda reg: -reg.size)
    else:
        regions = []
        for j, box in order:
            regions += sorted(
                _regions(j, truths[j], labels[j], provenance[j], box), key=lambda reg: -reg.size
            )
    out = Correction()
    depths: dict[tuple[int, int], np.ndarray] = {}
    stroked: set[int] = set()
    for _pass in range(MAX_PASSES):
        painted_any = False
        for k, reg in enumerate(regions):
            if out.pixels >= budget:
                break
            key = (reg.image, reg.value)
            if key not in depths:
                depths[key] = _depth(truths[reg.image], reg.value)
            (y0, x0), (hh, ww) = reg.origin, reg.mask.shape
            sl = (slice(y0, y0 + hh), slice(x0, x0 + ww))
            path = _stroke_path(reg.mask, depths[key][sl], rng)[: budget - out.pixels]
            if not path:
                continue
            ys, xs = (np.array(v) for v in zip(*path, strict=True))
            lab, pv = labels[reg.image][sl], provenance[reg.image][sl]
            out.over_machine += int((lab[ys, xs] != 0).sum())
            lab[ys, xs] = reg.value
            pv[ys, xs] = PROVENANCE_HUMAN
            reg.mask[ys, xs] = False
            out.pixels += len(path)
            out.strokes += 1
            stroked.add(k)
            painted_any = True
        if out.pixels >= budget or not painted_any:
            break
    out.regions = len(stroked)
    return out
