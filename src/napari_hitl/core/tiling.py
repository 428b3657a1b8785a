"""Seamless tiled evaluation of a fully convolutional model over an image of any size."""

from __future__ import annotations

from collections.abc import Callable, Generator

import numpy as np

from napari_hitl.core.progress import CancelToken, Progress


def _ceil_to(n: int, m: int) -> int:
    return -(-n // m) * m


def tiled_apply(
    fn: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    n_out: int,
    halo: int,
    align: int = 1,
    tile: int | None = 512,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, np.ndarray]:
    """Apply ``fn`` (``C, h+2*halo, w+2*halo`` → ``n_out, h, w``) tile by tile; a generator.

    The image is reflect-padded by ``halo`` once (and to a multiple of ``align``), every tile is
    a window of that padded image starting on a multiple of ``align``, so the result equals one
    whole-image call (``tile=None``) to float precision.

    Returns
    -------
    np.ndarray
        ``n_out, H, W`` float32.
    """
    _c, h, w = x.shape
    th = _ceil_to(h, align)
    tw = _ceil_to(w, align)
    mode = "reflect" if min(h, w) > halo else "symmetric"
    padded = np.pad(x, ((0, 0), (halo, halo + th - h), (halo, halo + tw - w)), mode=mode)
    size = _ceil_to(max(th, tw), align) if tile is None else max(align, _ceil_to(tile, align))
    out = np.empty((n_out, th, tw), np.float32)
    origins = [(y, xx) for y in range(0, th, size) for xx in range(0, tw, size)]
    for i, (y0, x0) in enumerate(origins):
        if cancel is not None:
            cancel.raise_if_cancelled()
        y1, x1 = min(y0 + size, th), min(x0 + size, tw)
        window = padded[:, y0 : y1 + 2 * halo, x0 : x1 + 2 * halo]
        out[:, y0:y1, x0:x1] = fn(np.ascontiguousarray(window))
        yield Progress(i + 1, len(origins), f"tile {i + 1}/{len(origins)}")
    return out[:, :h, :w]
