"""Seamless tiled evaluation of a fully convolutional model over an image of any size."""

from __future__ import annotations

from collections.abc import Callable, Generator

import numpy as np

from napari_hitl.core.progress import CancelToken, Progress

Box = tuple[int, int, int, int]  # row0, row1, col0, col1 (end exclusive)


def ceil_to(n: int, m: int) -> int:
    """``n`` rounded up to a multiple of ``m``."""
    return -(-n // m) * m


def pad_for_tiles(x: np.ndarray, halo: int, align: int = 1) -> np.ndarray:
    """``C, H, W`` reflect-padded by ``halo`` on every side, and at the end to a multiple of
    ``align`` (symmetric padding when the image is smaller than the halo)."""
    _c, h, w = x.shape
    mode = "reflect" if min(h, w) > halo else "symmetric"
    return np.pad(
        x,
        ((0, 0), (halo, halo + ceil_to(h, align) - h), (halo, halo + ceil_to(w, align) - w)),
        mode=mode,
    )


def tile_grid(shape: tuple[int, int], align: int = 1, tile: int | None = 512) -> list[Box]:
    """Output boxes ``(row0, row1, col0, col1)`` of the tiles covering ``shape`` padded to
    ``align``; every tile starts on a multiple of ``align`` (``tile=None``: one tile)."""
    th, tw = ceil_to(shape[0], align), ceil_to(shape[1], align)
    size = ceil_to(max(th, tw), align) if tile is None else max(align, ceil_to(tile, align))
    return [
        (y0, min(y0 + size, th), x0, min(x0 + size, tw))
        for y0 in range(0, th, size)
        for x0 in range(0, tw, size)
    ]


def tiled_apply(
    fn: Callable[..., np.ndarray],
    x: np.ndarray,
    n_out: int,
    halo: int,
    align: int = 1,
    tile: int | None = 512,
    cancel: CancelToken | None = None,
    *,
    pass_box: bool = False,
    label: str = "tile",
) -> Generator[Progress, None, np.ndarray]:
    """Apply ``fn`` (``C, h+2*halo, w+2*halo`` → ``n_out, h, w``) tile by tile; a generator.

    The image is reflect-padded by ``halo`` once (and to a multiple of ``align``), every tile is
    a window of that padded image starting on a multiple of ``align``, so the result equals one
    whole-image call (``tile=None``) to float precision. With ``pass_box``, ``fn`` also gets the
    tile's output box ``(row0, row1, col0, col1)`` in image pixels (for position-dependent
    work, e.g. a guided network); ``label`` starts the progress messages.

    Returns
    -------
    np.ndarray
        ``n_out, H, W`` float32.
    """
    _c, h, w = x.shape
    padded = pad_for_tiles(x, halo, align)
    out = np.empty((n_out, ceil_to(h, align), ceil_to(w, align)), np.float32)
    boxes = tile_grid((h, w), align, tile)
    for i, (y0, y1, x0, x1) in enumerate(boxes):
        if cancel is not None:
            cancel.raise_if_cancelled()
        window = padded[:, y0 : y1 + 2 * halo, x0 : x1 + 2 * halo]
        window = np.ascontiguousarray(window)
        out[:, y0:y1, x0:x1] = fn(window, (y0, y1, x0, x1)) if pass_box else fn(window)
        yield Progress(i + 1, len(boxes), f"{label} {i + 1}/{len(boxes)}")
    return out[:, :h, :w]
