"""Clicks that become labels: positive and negative points of a class.

The interaction kinds people expect from labeling tools (``003_c7cc8e25b8853cd9``: points,
boxes, scribbles). Scribbles are the Labels brush and boxes the region rectangle; this module
turns points into sparse labels:

- a **positive** point of class *c* labels a small disk as *c*;
- a **negative** point of class *c* says "not *c* here". With two classes that is the other
  class, so the disk gets it. With more classes there is no single answer: the point removes the
  machine labels of class *c* connected to it (a wrong accepted prediction), and the person
  paints the right class if they wish.

Points are human input, so they may correct machine labels but never change a human label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from napari_hitl.core.errors import HitlError
from napari_hitl.core.store import PROVENANCE_HUMAN


@dataclass
class PointsResult:
    """What :func:`apply_points` did.

    Attributes
    ----------
    labels
        The new label array (the input is not modified).
    labeled
        Pixels that got a label from a point.
    removed
        Machine-labeled pixels removed by negative points.
    skipped
        Points that changed nothing: outside the image, on human labels only, already that
        class, or (negative) on no machine label of their class.
    """

    labels: np.ndarray
    labeled: int
    removed: int
    skipped: int


def _disk(
    shape: tuple[int, int], row: int, col: int, radius: int
) -> tuple[slice, slice, np.ndarray]:
    h, w = shape
    r0, r1 = max(row - radius, 0), min(row + radius + 1, h)
    c0, c1 = max(col - radius, 0), min(col + radius + 1, w)
    rr, cc = np.ogrid[r0:r1, c0:c1]
    return slice(r0, r1), slice(c0, c1), (rr - row) ** 2 + (cc - col) ** 2 <= radius**2


def apply_points(
    labels: np.ndarray,
    provenance: np.ndarray,
    points: np.ndarray,
    values: Sequence[int],
    positive: Sequence[bool],
    class_values: Sequence[int],
    radius: int = 2,
) -> PointsResult:
    """Turn positive / negative points of classes into labels of a 2-D image.

    Parameters
    ----------
    labels, provenance
        ``H, W`` labels and their provenance (1 = human, ≥ 2 = machine).
    points
        ``N, 2`` (row, col) positions in pixels (rounded to the nearest pixel).
    values
        The class value of each point.
    positive
        ``True`` for a positive point ("this is the class"), ``False`` for a negative one.
    class_values
        The project's class values.
    radius
        Radius in pixels of the disk a point labels.

    Raises
    ------
    HitlError
        A point's class is not one of the project's, or the arrays disagree in length.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise HitlError(f"points label a 2-D image (or one slice); got shape {labels.shape}")
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    values = [int(v) for v in values]
    positive = [bool(p) for p in positive]
    if not len(points) == len(values) == len(positive):
        raise HitlError("every point needs a class and a positive/negative flag")
    unknown = sorted(set(values) - set(class_values))
    if unknown:
        raise HitlError(f"points of classes {unknown} that the project does not have")
    out = labels.copy()
    human = np.asarray(provenance) == PROVENANCE_HUMAN
    machine = (np.asarray(provenance) > PROVENANCE_HUMAN) & (labels > 0)
    labeled = removed = skipped = 0
    two = len(class_values) == 2
    for (r, c), value, pos in zip(points, values, positive, strict=True):
        row, col = int(np.rint(r)), int(np.rint(c))
        if not (0 <= row < out.shape[0] and 0 <= col < out.shape[1]):
            skipped += 1
            continue
        if pos or two:
            target = value if pos else next(v for v in class_values if v != value)
            rs, cs, disk = _disk(out.shape, row, col, radius)
            free = disk & ~human[rs, cs] & (out[rs, cs] != target)
            out[rs, cs][free] = target
            labeled += int(free.sum())
            skipped += int(not free.any())
            continue
        from scipy import ndimage

        comps, _ = ndimage.label(machine & (out == value))
        k = comps[row, col]
        if k == 0:
            skipped += 1
            continue
        region = comps == k
        out[region] = 0
        removed += int(region.sum())
    return PointsResult(out, labeled, removed, skipped)
