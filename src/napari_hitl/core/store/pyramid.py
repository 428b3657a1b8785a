"""Tiles and the resolution pyramid of an image (and of its labels)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import zarr

from napari_hitl.core.store.layout import chunks_for
from napari_hitl.core.store.ngff import (
    dimension_names,
    disk_axes,
    shown,
)
from napari_hitl.core.tiling import tiles

TILE = 1024  # import tile edge; chunks are smaller
PYRAMID_MIN_EDGE = 4096  # images with a longer side get a multiscale pyramid at import
PYRAMID_TOP_EDGE = 1024  # ...halving until the longer side is at most this


def create_image_level(
    group: zarr.Group, level: int, shape: tuple[int, ...], dtype: np.dtype, axes: str
) -> Any:
    """Create pyramid ``level`` of an image (``shape`` channel first) in NGFF axis order, with
    its ``dimension_names``; returned as the store reads it (channel first)."""
    order = disk_axes(axes)
    stored = tuple(shape[axes.index(a)] for a in order)
    chunk = chunks_for(shape, dtype.itemsize)
    arr = group.create_array(
        str(level),
        shape=stored,
        dtype=dtype,
        chunks=tuple(chunk[axes.index(a)] for a in order),
        fill_value=0,
        dimension_names=dimension_names(order),
    )
    return shown(arr)


def spatial_tiles(spatial: tuple[int, ...], edge: int | None = None) -> Iterator[tuple[Any, ...]]:
    """Import tiles over the trailing Y, X axes, for every index of a stack axis
    (:func:`~napari_hitl.core.tiling.tiles`); ``edge`` defaults to :data:`TILE` (read at call
    time)."""
    return tiles(spatial, edge or TILE)


def pyramid_levels(spatial: Sequence[int], force: bool = False) -> int:
    """How many downsampled levels an image of ``spatial`` shape gets at import (0: none).

    Levels halve the two last axes until the longer side is at most :data:`PYRAMID_TOP_EDGE`;
    only images whose longer side exceeds :data:`PYRAMID_MIN_EDGE` get them unless ``force``.
    """
    h, w = (int(v) for v in spatial[-2:])
    if not force and max(h, w) <= PYRAMID_MIN_EDGE:
        return 0
    n = 0
    while max(h, w) > PYRAMID_TOP_EDGE:
        h, w, n = -(-h // 2), -(-w // 2), n + 1
    return n


def level_shape(spatial: Sequence[int], level: int) -> tuple[int, ...]:
    """Spatial shape of pyramid level ``level`` (each level rounds half sizes up)."""
    *stack, h, w = (int(v) for v in spatial)
    for _ in range(level):
        h, w = -(-h // 2), -(-w // 2)
    return (*stack, h, w)


def pyramid_tiles(spatial: tuple[int, ...], levels: int) -> list[tuple[int, tuple[slice, ...]]]:
    """(level, tile of that level) for every level to write, coarser levels after finer."""
    return [
        (k, tile) for k in range(1, levels + 1) for tile in spatial_tiles(level_shape(spatial, k))
    ]


def downsample2(block: np.ndarray) -> np.ndarray:
    """Means of 2 × 2 pixels over the two last axes (an odd last row/column is repeated), in
    the block's dtype (integers rounded). A NaN makes its 2 × 2 mean NaN."""
    h, w = block.shape[-2:]
    if h % 2 or w % 2:
        pad = [(0, 0)] * (block.ndim - 2) + [(0, h % 2), (0, w % 2)]
        block = np.pad(block, pad, mode="edge")
    f = block.astype(np.float32)
    out = (f[..., ::2, ::2] + f[..., 1::2, ::2] + f[..., ::2, 1::2] + f[..., 1::2, 1::2]) * 0.25
    if block.dtype.kind in "iub":
        info = np.iinfo(block.dtype) if block.dtype.kind != "b" else np.iinfo(np.uint8)
        return np.clip(np.rint(out), info.min, info.max).astype(block.dtype)
    return out.astype(block.dtype)


def write_level_tile(group: zarr.Group, level: int, tile: tuple[slice, ...], axes: str) -> None:
    """Compute one tile of pyramid ``level`` from level ``level - 1`` (created on first use);
    ``axes``: the image's channel-first axes."""
    src = shown(group[str(level - 1)])
    shape = (src.shape[0], *level_shape(src.shape[1:], 1))
    key = str(level)
    if key in group:
        dst = shown(group[key])
    else:
        dst = create_image_level(group, level, shape, src.dtype, axes)
    *stack, ys, xs = tile
    src_tile = (*stack, slice(2 * ys.start, 2 * ys.stop), slice(2 * xs.start, 2 * xs.stop))
    block = np.asarray(src[(slice(None), *src_tile)])
    dst[(slice(None), *tile)] = downsample2(block)


def level_count(spatial: tuple[int, ...], pyramid: bool | None) -> int:
    if pyramid is None:
        return pyramid_levels(spatial)
    return max(1, pyramid_levels(spatial, force=True)) if pyramid else 0
