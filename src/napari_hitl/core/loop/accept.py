"""Accept confident predictions and push them into the labels — never over a human label.

Pure functions on arrays (used by tests, the GUI preview and the simulator) plus store-backed
versions that persist the undo history in ``images/<name>/hitl/pushes/`` so that an undo works
after napari was closed and reopened.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_hitl.core.choices import DEFAULT_THRESHOLD
from napari_hitl.core.store import (
    LABEL_DTYPE,
    PROVENANCE_UNLABELED,
    ProjectStore,
    machine_provenance,
)


@dataclass
class PushRecord:
    """One push: which pixels (flat indices) got which class, in which iteration."""

    iteration: int
    index: np.ndarray
    values: np.ndarray

    @property
    def count(self) -> int:
        """Number of pixels pushed."""
        return int(self.index.size)


def accept_mask(
    confidence: np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
    region: np.ndarray | tuple[int, int, int, int] | None = None,
    valid: np.ndarray | None = None,
    predicted: np.ndarray | None = None,
    margin: int = 0,
) -> np.ndarray:
    """Pixels whose confidence is at least ``threshold`` (inside ``region`` and valid).

    Parameters
    ----------
    confidence
        Calibrated confidence μ = max p per pixel.
    threshold
        Minimum confidence, in [0, 1].
    region
        A boolean mask or a box ``(row0, row1, col0, col1)`` (a Shapes rectangle).
    valid
        Pixels with data (nodata pixels are never accepted).
    predicted, margin
        With ``margin`` > 0, accept only pixels whose whole ``(2·margin+1)²`` neighbourhood is
        predicted as the same class at confidence ≥ ``threshold`` (see :func:`settled`).
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold {threshold} must be in [0, 1]")
    if margin < 0:
        raise ValueError(f"margin {margin} must be 0 or more pixels")
    mask = confidence >= threshold
    if margin > 0:
        if predicted is None:
            raise ValueError("a margin needs the predicted classes")
        mask &= settled(predicted, confidence, threshold, margin)
    if region is not None:
        if isinstance(region, tuple):
            r0, r1, c0, c1 = region
            box = np.zeros(mask.shape, bool)
            box[..., max(r0, 0) : max(r1, 0), max(c0, 0) : max(c1, 0)] = True
            mask &= box
        else:
            mask &= np.asarray(region, bool)
    if valid is not None:
        mask &= valid
    return mask


def settled(
    predicted: np.ndarray, confidence: np.ndarray, threshold: float, radius: int
) -> np.ndarray:
    """Pixels whose whole ``(2·radius+1)²`` neighbourhood is predicted as the same class at
    confidence ≥ ``threshold``.

    Confidently wrong predictions concentrate on class boundaries: on sen1floods the wrong pixels
    the loop accepted lay within 1–2 px of a true boundary, and each push moved the boundary a
    little further ("creep"). Keeping a margin of one pixel away from the predicted boundary and
    from unconfident pixels removes most of them; the person paints the boundaries.
    """
    from scipy import ndimage

    size = 2 * radius + 1
    same = ndimage.maximum_filter(predicted, size) == ndimage.minimum_filter(predicted, size)
    return same & (ndimage.minimum_filter(confidence, size) >= threshold)


def push(
    labels: np.ndarray,
    provenance: np.ndarray,
    predicted: np.ndarray,
    accept: np.ndarray,
    iteration: int,
) -> tuple[np.ndarray, np.ndarray, PushRecord]:
    """Copy accepted predictions into unlabeled pixels only.

    Returns new label and provenance arrays (the inputs are not modified) and the record needed
    to undo it. Pixels with any label — human or machine — are never changed.
    """
    target = accept & (labels == 0) & (predicted > 0)
    index = np.flatnonzero(target)
    values = predicted.ravel()[index].astype(LABEL_DTYPE)
    new_labels = labels.astype(LABEL_DTYPE, copy=True)
    new_prov = provenance.astype(LABEL_DTYPE, copy=True)
    new_labels.ravel()[index] = values
    new_prov.ravel()[index] = machine_provenance(iteration)
    return new_labels, new_prov, PushRecord(iteration, index, values)


def undo_push(
    labels: np.ndarray, provenance: np.ndarray, record: PushRecord
) -> tuple[np.ndarray, np.ndarray, int]:
    """Revert a push: its pixels become unlabeled again.

    A pixel a person has edited since the push (provenance no longer that machine iteration) is a
    human label now and stays. Returns new arrays and the number of pixels reverted.
    """
    new_labels = labels.astype(LABEL_DTYPE, copy=True)
    new_prov = provenance.astype(LABEL_DTYPE, copy=True)
    idx = record.index
    still = new_prov.ravel()[idx] == machine_provenance(record.iteration)
    idx = idx[still]
    new_labels.ravel()[idx] = 0
    new_prov.ravel()[idx] = PROVENANCE_UNLABELED
    return new_labels, new_prov, int(idx.size)


def clear_machine_labels(
    labels: np.ndarray, provenance: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """Remove every machine-accepted label; human labels stay."""
    machine = provenance >= machine_provenance(1)
    new_labels = np.where(machine, 0, labels).astype(LABEL_DTYPE)
    new_prov = np.where(machine, PROVENANCE_UNLABELED, provenance).astype(LABEL_DTYPE)
    return new_labels, new_prov, int(machine.sum())


# ----------------------------------------------------------------- store-backed history
def push_history(store: ProjectStore, name: str) -> list[int]:
    """Iterations of the pushes that can still be undone, oldest first."""
    return [store.read_push(name, key)[0] for key in store.push_keys(name)]


def store_push(
    store: ProjectStore, name: str, predicted: np.ndarray, accept: np.ndarray, iteration: int
) -> PushRecord:
    """Push into the stored labels of image ``name`` and record it for undo (one transaction)."""
    with store.write_lock(f"push into {name}"):
        now = store.label_state(name)
        new_labels, new_prov, record = push(
            now.labels, now.provenance, predicted, accept, iteration
        )
        if record.count:
            store.commit_labels(
                name,
                new_labels,
                new_prov,
                old=now,
                add_push=(iteration, record.index, record.values),
                what="push",
            )
    return record


def store_undo(store: ProjectStore, name: str) -> int:
    """Undo the last push of image ``name``; returns pixels reverted (0 if nothing to undo)."""
    with store.write_lock(f"undo in {name}"):
        keys = store.push_keys(name)
        if not keys:
            return 0
        iteration, index, values = store.read_push(name, keys[-1])
        now = store.label_state(name)
        labels, prov, n = undo_push(
            now.labels, now.provenance, PushRecord(iteration, index, values)
        )
        store.commit_labels(name, labels, prov, old=now, drop_pushes=[keys[-1]], what="undo")
        return n


def store_clear_machine(store: ProjectStore, name: str) -> int:
    """Remove every machine label of image ``name`` (and its push history)."""
    with store.write_lock(f"clear machine labels of {name}"):
        now = store.label_state(name)
        labels, prov, n = clear_machine_labels(now.labels, now.provenance)
        store.commit_labels(
            name, labels, prov, old=now, drop_pushes=store.push_keys(name), what="clear"
        )
        return n
