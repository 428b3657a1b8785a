"""Where the labels of a big image are: the windows training reads instead of the whole image.

Training only looks at pixels near labels (a U-Net crop reaches 40 px from a labeled pixel, the
patch CNN 12 px, calibration the network's 24-px halo). For an image plane larger than
:data:`WINDOWED_MIN_PIXELS`, :func:`label_windows` scans the labels chunk by chunk (never the
whole array at once) and returns boxes that hold every labeled pixel with :data:`WINDOW_MARGIN`
pixels of real context around it; training then reads only those boxes of the bands.

Boxes are the bounding boxes of connected groups of labeled tiles, widened by the margin and
merged while they overlap, so no pixel is trained on twice and a painted stroke is never cut in
two (calibration holds out whole strokes).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_hitl.core.tiling import Box

WINDOWED_MIN_PIXELS = 2048 * 2048  # larger planes train from windows around their labels
WINDOW_MARGIN = 64  # >= the U-Net's training reach (40 px) and inference halo (24 + 4 px)
SCAN_TILE = 512  # labels are scanned in tiles of this edge (the store's label chunks)


def labeled_tiles(labels: Any, index: int | None = None, tile: int = SCAN_TILE) -> np.ndarray:
    """Boolean grid: which ``tile`` × ``tile`` tiles of a labels plane hold a label.

    ``labels`` is a zarr (or numpy) array ``[Z,] H, W``; only one tile is in memory at a time.
    ``tile`` defaults to :data:`SCAN_TILE`.
    """
    tile = tile or SCAN_TILE
    lead = () if index is None else (int(index),)
    h, w = (int(v) for v in labels.shape[-2:])
    ny, nx = -(-h // tile), -(-w // tile)
    grid = np.zeros((ny, nx), bool)
    for i in range(ny):
        for j in range(nx):
            part = labels[(*lead, slice(i * tile, (i + 1) * tile), slice(j * tile, (j + 1) * tile))]
            grid[i, j] = bool(np.asarray(part).any())
    return grid


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]


def _merge(boxes: list[Box]) -> list[Box]:
    """Boxes merged (bounding box of both) while any two overlap."""
    boxes = list(boxes)
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                if _overlap(boxes[i], boxes[j]):
                    a, b = boxes[i], boxes.pop(j)
                    boxes[i] = (min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]))
                    merged = True
                    break
            if merged:
                break
    return sorted(boxes)


def label_windows(
    labels: Any,
    index: int | None = None,
    margin: int | None = None,
    tile: int | None = None,
) -> list[Box]:
    """Non-overlapping boxes ``(row0, row1, col0, col1)`` covering every label of a plane with
    ``margin`` pixels of context (clipped to the image); empty when the plane has no label.
    ``margin`` and ``tile`` default to :data:`WINDOW_MARGIN` and :data:`SCAN_TILE`."""
    from scipy import ndimage

    margin = WINDOW_MARGIN if margin is None else int(margin)
    tile = tile or SCAN_TILE
    h, w = (int(v) for v in labels.shape[-2:])
    grid = labeled_tiles(labels, index, tile)
    groups, n = ndimage.label(grid, structure=np.ones((3, 3), bool))
    boxes = []
    for rows, cols in ndimage.find_objects(groups)[:n]:
        boxes.append(
            (
                max(0, rows.start * tile - margin),
                min(h, rows.stop * tile + margin),
                max(0, cols.start * tile - margin),
                min(w, cols.stop * tile + margin),
            )
        )
    return _merge(boxes)
