"""Opening checked and damage named: a chunk that cannot be decoded, a store summary."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import zarr

from napari_hitl.core.errors import (
    HitlError,
    StoreError,
)
from napari_hitl.core.store.project import ProjectStore


def open_store(path: str | os.PathLike[str], mode: str = "r") -> ProjectStore:
    """:meth:`ProjectStore.open`, which checks the root metadata's types (kept for callers)."""
    return ProjectStore.open(path, mode)


def is_decode_error(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while decoding a stored chunk (zarr codecs or numcodecs)."""
    if not isinstance(exc, Exception) or isinstance(exc, HitlError):
        return False
    tb = exc.__traceback__
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename.replace("\\", "/")
        if "/numcodecs/" in name or "numcodecs/" in name or "/zarr/codecs/" in name:
            return True
        tb = tb.tb_next
    return False


# Arrays of an image that a corrupt chunk is looked for in, cheapest first.
_CHECKED_ARRAYS = ("labels/annotations/0", "hitl/provenance", "hitl/valid")


def find_damaged_chunk(
    store: ProjectStore, arrays: Sequence[str] = _CHECKED_ARRAYS
) -> tuple[str, str, str, str] | None:
    """The first chunk of ``arrays`` (of any image) that cannot be decoded.

    Returns
    -------
    tuple of str or None
        ``(image, array, chunk key, reason)``, or ``None`` when every chunk reads.
    """
    for name in store.image_names():
        group = zarr.open_group(str(store.path / "images" / name), mode="r")
        for key in arrays:
            try:
                arr = group[key]
            except KeyError:
                continue
            if not isinstance(arr, zarr.Array):
                continue
            for idx in np.ndindex(*arr.cdata_shape):
                try:
                    arr.blocks[idx]
                except Exception as exc:
                    chunk = arr.metadata.encode_chunk_key(idx)
                    return name, key, chunk, f"{type(exc).__name__}: {exc}"
    return None


def damaged_store_error(store: ProjectStore, exc: BaseException) -> StoreError:
    """A one-line :class:`StoreError` for a chunk that failed to decode.

    Parameters
    ----------
    store
        The store the chunk belongs to.
    exc
        The codec's exception (see :func:`is_decode_error`).

    Returns
    -------
    StoreError
        Naming the image, array and chunk when :func:`find_damaged_chunk` finds them.
    """
    found = find_damaged_chunk(store)
    if found is None:
        return StoreError(
            f"{store.path}: a stored chunk cannot be decoded ({type(exc).__name__}: {exc}); "
            "the store is damaged: restore it from a backup"
        )
    name, key, chunk, reason = found
    return StoreError(
        f"{store.path}: image {name!r}, array {key}: chunk {chunk} cannot be decoded ({reason}); "
        f"the store is damaged: restore it from a backup, or re-import the image with "
        "--overwrite --discard-labels"
    )


def store_summary(store: ProjectStore) -> dict[str, Any]:
    """:meth:`ProjectStore.summary`, with an undecodable chunk reported as a :class:`StoreError`
    naming the image and array instead of a codec's own exception."""
    try:
        return store.summary()
    except Exception as exc:
        if is_decode_error(exc):
            raise damaged_store_error(store, exc) from exc
        raise
