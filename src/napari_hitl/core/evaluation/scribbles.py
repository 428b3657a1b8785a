"""Simulated strokes: the sparse scribbles a person would paint on ground truth, and the
round brush they are painted with."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def brush_disk(r: int) -> np.ndarray:
    """The ``2r+1``-square bool footprint of a round brush of radius ``r`` px."""
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (yy**2 + xx**2) <= r * r + r * 0.5


def sparse_scribbles(ground_truth: np.ndarray, fraction: float = 0.01, seed: int = 0) -> np.ndarray:
    """Simulate a careful human's partial labeling of a ground truth with short brush strokes.

    Strokes are 1–5 px wide (as wide as the region allows) and 8–40 px long, slightly curved,
    and stay at least 3 px away from every pixel of another value, so no labeled pixel lies within
    2 px (Chebyshev) of a class boundary.  Every class present that has such an interior gets at
    least one stroke; further strokes go to classes in proportion to the square root of their
    interior area, until about `fraction` of all pixels are labeled.

    Parameters
    ----------
    ground_truth : numpy.ndarray
        ``(H, W)`` integer class map; 0 is treated as "no class" and never labeled.
    fraction : float
        Target share of labeled pixels, in (0, 1].  The result overshoots by at most one stroke
        (and more when it is so small that one stroke per class exceeds it).
    seed : int
        Seed of the random generator; the result is deterministic.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` uint8, 0 = unlabeled, otherwise the ground-truth class.
    """
    gt = np.asarray(ground_truth)
    if gt.ndim != 2:
        raise ValueError(f"ground_truth must be 2-D, got shape {gt.shape}")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if gt.size and (gt.min() < 0 or gt.max() > 255):
        raise ValueError("ground_truth values must be in 0..255")
    rng = np.random.default_rng(seed)
    h, w = gt.shape
    out = np.zeros((h, w), np.uint8)
    target = fraction * gt.size
    brushes = {r: brush_disk(r) for r in (0, 1, 2)}

    classes = [int(c) for c in np.unique(gt) if c != 0]
    interior: dict[int, np.ndarray] = {}  # distance to the nearest pixel of another value
    centres: dict[int, dict[int, np.ndarray]] = {}  # allowed stroke centres per brush radius
    for c in classes:
        dist = ndi.distance_transform_edt(gt == c)
        interior[c] = dist
        per_r = {r: np.flatnonzero(dist >= 3 + r) for r in (0, 1, 2)}
        if per_r[0].size:
            centres[c] = per_r
    if not centres:
        return out
    order = list(centres)
    weights = np.sqrt([centres[c][0].size for c in order])
    weights /= weights.sum()

    labeled = 0
    n_strokes = 0
    max_strokes = 50 + int(target)  # every stroke labels at least one new pixel or is wasted
    while n_strokes < max_strokes:
        if n_strokes >= len(order) and labeled >= target:
            break
        c = order[n_strokes] if n_strokes < len(order) else order[rng.choice(len(order), p=weights)]
        n_strokes += 1
        r = int(rng.integers(1, 3))
        while r > 0 and centres[c][r].size == 0:
            r -= 1
        ok_centre = interior[c] >= 3 + r
        start = centres[c][r][rng.integers(centres[c][r].size)]
        y, x = float(start // w), float(start % w)
        theta = rng.uniform(0, 2 * np.pi)
        brush = brushes[r]
        for _ in range(int(rng.integers(8, 41))):
            iy, ix = round(y), round(x)
            if not (0 <= iy < h and 0 <= ix < w) or not ok_centre[iy, ix]:
                break
            r0, r1, c0, c1 = max(iy - r, 0), min(iy + r + 1, h), max(ix - r, 0), min(ix + r + 1, w)
            b = brush[r0 - iy + r : r1 - iy + r, c0 - ix + r : c1 - ix + r]
            window = out[r0:r1, c0:c1]
            new = b & (window == 0) & (interior[c][r0:r1, c0:c1] >= 3)
            window[new] = c
            labeled += int(new.sum())
            theta += rng.normal(0, 0.15)
            y += np.sin(theta)
            x += np.cos(theta)
    return out
