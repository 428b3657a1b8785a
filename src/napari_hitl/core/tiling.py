"""Seamless tiled evaluation of a fully convolutional model over an image of any size, and
the block geometry of batch prediction (block edges, ``--chunk`` sizes)."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any

import numpy as np

from napari_hitl.core.progress import CancelToken, Progress

Box = tuple[int, int, int, int]  # row0, row1, col0, col1 (end exclusive)
MIN_CHUNK = 64  # the smallest block edge batch prediction accepts


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


def tiles(shape: Sequence[int], edge: int) -> Iterator[tuple[int | slice, ...]]:
    """Blocks covering an array of ``shape``: every index of its leading axes (as integers),
    times ``edge``² windows over its two last axes (the last row and column smaller)."""
    *lead, ny, nx = (int(v) for v in shape)
    for idx in np.ndindex(*lead):
        for y in range(0, ny, edge):
            for x in range(0, nx, edge):
                yield (*idx, slice(y, min(y + edge, ny)), slice(x, min(x + edge, nx)))


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


def block_bounds(size: int, chunk: int, min_last: int) -> list[int]:
    """Block edges along an axis of ``size`` pixels: every ``chunk`` pixels, the last block merged
    into the one before when it would be shorter than ``min_last`` (a block must hold a halo)."""
    edges = [*range(0, size, chunk), size]
    if len(edges) > 2 and edges[-1] - edges[-2] < min_last:
        del edges[-2]
    return edges


def parse_chunk(text: str | int | Sequence[int] | None, align: int = 1) -> tuple[int, int] | None:
    """``"1024"``, ``"512,2048"``, 1024 or (512, 2048) as (rows, cols), rounded up to ``align``.

    Raises
    ------
    ValueError
        Not one or two whole numbers of at least :data:`MIN_CHUNK`.
    """
    if text is None:
        return None
    if isinstance(text, int):
        parts: list[Any] = [text]
    elif isinstance(text, str):
        parts = [p for p in text.replace("x", ",").split(",") if p.strip()]
    else:
        parts = list(text)
    try:
        values = [int(p) for p in parts]
    except (TypeError, ValueError):
        values = []
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or min(values) < MIN_CHUNK:
        raise ValueError(
            f"chunk {text!r} must be one edge or ROWS,COLS in pixels, each at least {MIN_CHUNK} "
            "(e.g. 1024 or 512,2048)"
        )
    return ceil_to(values[0], align), ceil_to(values[1], align)
