"""What each Train records in the project store: the person's effort so far and what it bought.

A real project has no ground truth, so the loop's honest measures are the ones kept here, one
record per Train (:func:`train_record`, appended by :func:`napari_hitl.core.loop.train_project`
through :meth:`~napari_hitl.core.store.ProjectStore.append_history`):

``train``
    1, 2, 3… (the record's place; ``iteration`` starts again at 1 when a fresh model is trained).
``iteration``, ``time``, ``model``, ``warm_start``
    The model's iteration, when the Train finished (ISO 8601, UTC), the model kind.
``pixels``
    Every pixel of every image plane of the project (each slice of a stack counts).
``human_pixels``, ``human_strokes``
    Pixels of human provenance, and their strokes: 8-connected components of one class in one
    plane.
``labeled_fraction``, ``machine_fraction``
    Labeled (human or machine) pixels and machine-labeled pixels over ``pixels``.
``holdout_pixels``, ``holdout_accuracy``
    Human pixels held out of training (whole strokes) and the share of them the model predicts
    right (``None`` under 20 held-out pixels).
``temperature``, ``train_seconds``
    The calibration temperature and how long training took.

Counting reads each plane's provenance once (tile by tile for planes larger than
:data:`~napari_hitl.core.loop.label_windows.WINDOWED_MIN_PIXELS`), and labels only around human
strokes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from napari_hitl.core.loop.label_windows import SCAN_TILE, WINDOWED_MIN_PIXELS
from napari_hitl.core.store import PROVENANCE_HUMAN, PROVENANCE_UNLABELED, ProjectStore

HISTORY_FIELDS = (
    "train",
    "iteration",
    "time",
    "model",
    "warm_start",
    "pixels",
    "human_pixels",
    "human_strokes",
    "labeled_fraction",
    "machine_fraction",
    "holdout_pixels",
    "holdout_accuracy",
    "temperature",
    "train_seconds",
)
EIGHT = np.ones((3, 3), bool)  # 8-connectivity: a diagonal step is still the same stroke


@dataclass
class Effort:
    """Pixel and stroke counts over a project (or one plane of it)."""

    pixels: int = 0
    labeled: int = 0
    machine: int = 0
    human: int = 0
    strokes: int = 0

    def __iadd__(self, other: Effort) -> Effort:
        self.pixels += other.pixels
        self.labeled += other.labeled
        self.machine += other.machine
        self.human += other.human
        self.strokes += other.strokes
        return self

    @property
    def labeled_fraction(self) -> float:
        """Labeled pixels over all pixels (0 for an empty project)."""
        return self.labeled / self.pixels if self.pixels else 0.0

    @property
    def machine_fraction(self) -> float:
        """Machine-labeled pixels over all pixels (0 for an empty project)."""
        return self.machine / self.pixels if self.pixels else 0.0


def count_strokes(labels: np.ndarray, human: np.ndarray) -> int:
    """Human strokes in a plane: 8-connected components of ``human`` pixels of one class."""
    from scipy import ndimage

    if not human.any():
        return 0
    n = 0
    for c in np.unique(labels[human]):
        n += int(ndimage.label(human & (labels == c), structure=EIGHT)[1])
    return n


def plane_effort(
    labels: Any,
    provenance: Any,
    index: int | None = None,
    tile: int = SCAN_TILE,
    whole_max: int = WINDOWED_MIN_PIXELS,
) -> Effort:
    """Counts of one plane of a labels/provenance pair (zarr or numpy arrays ``[Z,] H, W``).

    A plane of at most ``whole_max`` pixels is read whole. A larger one is scanned ``tile`` by
    ``tile`` (provenance only); strokes are then counted in the bounding box of each 8-connected
    group of tiles holding a human pixel, restricted to that group's tiles — a stroke never
    leaves its group, so each is counted once and only those boxes of the labels are read.
    """
    from scipy import ndimage

    lead = () if index is None else (int(index),)
    h, w = (int(v) for v in provenance.shape[-2:])
    if h * w <= whole_max:
        prov = np.asarray(provenance[lead])
        human = prov == PROVENANCE_HUMAN
        strokes = count_strokes(np.asarray(labels[lead]), human) if human.any() else 0
        labeled = int(np.count_nonzero(prov != PROVENANCE_UNLABELED))
        n_human = int(np.count_nonzero(human))
        return Effort(h * w, labeled, labeled - n_human, n_human, strokes)
    ny, nx = -(-h // tile), -(-w // tile)
    grid = np.zeros((ny, nx), bool)
    out = Effort(pixels=h * w)
    for i in range(ny):
        for j in range(nx):
            sel = (*lead, slice(i * tile, (i + 1) * tile), slice(j * tile, (j + 1) * tile))
            prov = np.asarray(provenance[sel])
            n_labeled = int(np.count_nonzero(prov != PROVENANCE_UNLABELED))
            n_human = int(np.count_nonzero(prov == PROVENANCE_HUMAN))
            out.labeled += n_labeled
            out.human += n_human
            out.machine += n_labeled - n_human
            grid[i, j] = n_human > 0
    groups, n = ndimage.label(grid, structure=EIGHT)
    for g, (rows, cols) in enumerate(ndimage.find_objects(groups)[:n], start=1):
        r0, r1 = rows.start * tile, min(h, rows.stop * tile)
        c0, c1 = cols.start * tile, min(w, cols.stop * tile)
        sel = (*lead, slice(r0, r1), slice(c0, c1))
        mine = np.repeat(np.repeat(groups[rows, cols] == g, tile, 0), tile, 1)[: r1 - r0, : c1 - c0]
        human = (np.asarray(provenance[sel]) == PROVENANCE_HUMAN) & mine
        out.strokes += count_strokes(np.asarray(labels[sel]), human)
    return out


def project_effort(store: ProjectStore) -> Effort:
    """Counts over every plane of every image of ``store`` (each slice of a stack is a plane)."""
    total = Effort()
    for name in store.image_names():
        info = store.image_info(name)
        labels = store.labels_array(name)
        provenance = store.provenance_array(name)
        spatial = info.spatial_shape
        depth = int(spatial[0]) if len(spatial) == 3 else 0  # a Z/T stack: one plane per slice
        for k in range(depth) if depth else [None]:
            total += plane_effort(labels, provenance, k)
    return total


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def train_record(
    store: ProjectStore,
    report: Any,
    iteration: int,
    model: str,
    effort: Effort | None = None,
) -> dict[str, Any]:
    """The history record of a Train that produced ``report`` (a ``TrainReport``).

    ``effort`` defaults to :func:`project_effort` of ``store`` now.
    """
    effort = effort if effort is not None else project_effort(store)
    return {
        "train": len(store.history()) + 1,
        "iteration": int(iteration),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": str(model),
        "warm_start": bool(report.warm_start),
        "pixels": effort.pixels,
        "human_pixels": effort.human,
        "human_strokes": effort.strokes,
        "labeled_fraction": effort.labeled_fraction,
        "machine_fraction": effort.machine_fraction,
        "holdout_pixels": int(report.holdout_pixels),
        "holdout_accuracy": _finite(getattr(report, "holdout_accuracy", None)),
        "temperature": _finite(report.temperature),
        "train_seconds": _finite(report.seconds),
    }


def format_history(records: list[dict[str, Any]]) -> list[str]:
    """The history as text lines: a header, then one line per Train."""

    def num(value: Any, spec: str) -> str:
        width = int(spec[1:].split(".")[0])
        return format("—", f">{width}") if value is None else format(value, spec)

    lines = [
        f"{'train':>5}  {'iter':>4}  {'model':<9}  {'human px':>9}  {'strokes':>7}  "
        f"{'labeled':>7}  {'machine':>7}  {'held px':>7}  {'held acc':>8}  {'temp':>5}  "
        f"{'seconds':>7}  time"
    ]
    for r in records:
        lines.append(
            f"{num(r.get('train'), '>5')}  {num(r.get('iteration'), '>4')}  "
            f"{r.get('model', '?')!s:<9}  {num(r.get('human_pixels'), '>9')}  "
            f"{num(r.get('human_strokes'), '>7')}  {num(r.get('labeled_fraction'), '>7.1%')}  "
            f"{num(r.get('machine_fraction'), '>7.1%')}  {num(r.get('holdout_pixels'), '>7')}  "
            f"{num(r.get('holdout_accuracy'), '>8.1%')}  {num(r.get('temperature'), '>5.2f')}  "
            f"{num(r.get('train_seconds'), '>7.1f')}  {r.get('time', '')}"
        )
    return lines
