"""Active learning over a project store: the ranked queue, machine annotation, questions and
suspect labels.

:func:`rank_project` scores every image, stack slice or tile of the project with the current
model's predictions (predicting what is missing) and returns a :class:`Ranking`: the items in
the order a person should label them, each routed to the ``human`` or, for the easiest share γ_t
of HISE's schedule, to the ``machine`` (:func:`machine_annotate` pushes its pseudo-labels above
δ). Items the user marked done are kept in the store (:func:`mark_done`) and come last.
The scores themselves live in :mod:`napari_hitl.core.active.strategies`.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_hitl.core.active.strategies import (
    Box,
    ItemStats,
    Question,
    Schedule,
    Suspect,
    ask_pixels,
    find_suspects,
    item_key,
    priorities,
    rank_order,
    score_tiles,
    split_routes,
)
from napari_hitl.core.choices import DEFAULT_MARGIN
from napari_hitl.core.io.export import write_csv
from napari_hitl.core.learning.data import TrainingDataError
from napari_hitl.core.learning.prediction import Prediction
from napari_hitl.core.loop import (
    LoopState,
    current_prediction,
    load_state,
    predict_project_image,
    push_project_image,
    require_state,
    slice_name,
    stack_depth,
)
from napari_hitl.core.loop.accept import PushRecord
from napari_hitl.core.progress import CancelToken, Progress, run_to_end
from napari_hitl.core.store import PROVENANCE_HUMAN, ProjectStore

DONE_SETTING = "queue_done"
ROUTES = ("human", "machine", "done")


@dataclass
class QueueItem:
    """One entry of the queue: an image, a slice of a stack, or a tile of either."""

    image: str
    index: int | None
    box: Box
    stats: ItemStats
    priority: float = 0.0
    rank: int = 0
    route: str = "human"
    axis: str = "z"

    @property
    def key(self) -> str:
        """A stable name, e.g. ``"scene[z=2]@0:256,256:512"``."""
        base = self.image if self.index is None else slice_name(self.image, self.axis, self.index)
        return item_key(base, self.box)

    @property
    def centre(self) -> tuple[float, float]:
        """The box's centre (row, col) in pixels."""
        r0, r1, c0, c1 = self.box
        return ((r0 + r1 - 1) / 2, (c0 + c1 - 1) / 2)

    def row(self) -> dict[str, Any]:
        """A flat dict for tables and the difficulty CSV."""
        r0, r1, c0, c1 = self.box
        return {
            "rank": self.rank + 1,
            "item": self.key,
            "image": self.image,
            "slice": "" if self.index is None else self.index,
            "row0": r0,
            "row1": r1,
            "col0": c0,
            "col1": c1,
            "route": self.route,
            "priority": round(float(self.priority), 6),
            **self.stats.to_json(),
        }


@dataclass
class Ranking:
    """The queue: items in the order the human should label them (done ones last)."""

    strategy: str
    iteration: int
    beta: float
    gamma: float
    tile: int | None
    items: list[QueueItem] = field(default_factory=list)

    def by_route(self, route: str) -> list[QueueItem]:
        """The items routed to ``route`` (``human``, ``machine`` or ``done``), in rank order."""
        return [it for it in self.items if it.route == route]

    def rows(self) -> list[dict[str, Any]]:
        """One :meth:`QueueItem.row` per item, in rank order."""
        return [it.row() for it in self.items]

    def write_csv(self, path: str | Path) -> Path:
        """The per-item difficulty report (HISE): rank, route, τ_l and the other scores."""
        return write_csv(self.rows(), path)


def background_classes(store: ProjectStore) -> list[int]:
    """The classes that are not "objects" for τ_l: the stored setting, else every class named
    "background" (any case)."""
    stored = store.setting("background_classes")
    if stored is not None:
        return [int(v) for v in stored]
    return [c.value for c in store.classes if c.name.strip().lower() == "background"]


def done_items(store: ProjectStore) -> set[str]:
    """Keys of the items the user marked done."""
    return set(store.setting(DONE_SETTING, []) or [])


def mark_done(store: ProjectStore, keys: Sequence[str], done: bool = True) -> set[str]:
    """Mark queue items done (or not done again); returns every done key."""
    now = done_items(store)
    now = now | set(keys) if done else now - set(keys)
    store.set_setting(DONE_SETTING, sorted(now))
    return now


def plane_prediction(
    store: ProjectStore,
    name: str,
    state: LoopState,
    index: int | None = None,
    predict_missing: bool = True,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, Prediction | None]:
    """The current model's prediction of an image or slice: the stored one, else (when
    ``predict_missing``) a new one, stored when the store is writable."""
    pred = current_prediction(store, name, state, index=index)
    if pred is None and predict_missing:
        pred = yield from predict_project_image(
            store, name, state, write=store.writable, cancel=cancel, index=index
        )
    return pred


class _ImageArrays:
    """The labels, provenance and valid mask of one image at a time: a stack is read once for
    all its slices."""

    def __init__(self, store: ProjectStore) -> None:
        self.store = store
        self.name: str | None = None
        self.arrays: dict[str, np.ndarray] = {}

    def plane(self, name: str, index: int | None, key: str) -> np.ndarray:
        """``key`` (``labels``, ``provenance`` or ``valid``) of image ``name``, slice ``index``."""
        if name != self.name:
            self.name, self.arrays = name, {}
        if key not in self.arrays:
            read = {
                "labels": self.store.labels,
                "provenance": self.store.provenance,
                "valid": self.store.valid_mask,
            }[key]
            self.arrays[key] = read(name)
        arr = self.arrays[key]
        return arr if index is None else arr[index]


def _planes(store: ProjectStore, names: Sequence[str]) -> list[tuple[str, int | None, str]]:
    out: list[tuple[str, int | None, str]] = []
    for name in names:
        info = store.image_info(name)
        depth = stack_depth(info)
        axis = info.axes[1].lower() if depth else "z"
        out += [(name, z, axis) for z in range(depth)] if depth else [(name, None, axis)]
    return out


def rank_project(
    store: ProjectStore,
    strategy: str = "hise",
    *,
    tile: int | None = None,
    schedule: Schedule | None = None,
    t: int | None = None,
    background: Sequence[int] | None = None,
    names: Sequence[str] | None = None,
    state: LoopState | None = None,
    predict_missing: bool = True,
    seed: int = 0,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, Ranking]:
    """Rank the project's images (slices, tiles) for the human; a progress generator.

    Parameters
    ----------
    store
        The project.
    strategy
        One of :data:`napari_hitl.core.active.strategies.STRATEGIES`.
    tile
        Rank tiles of this edge (px) instead of whole images.
    schedule, t
        HISE's schedule and the iteration it is read at (default: the model's iteration − 1,
        so the first model reads β0 and γ0).
    background
        Classes that are not objects for τ_l (default :func:`background_classes`).
    names
        Images to rank (default all).
    state
        The model (default the stored ``latest``).
    predict_missing
        Predict images that have no current prediction (otherwise they are skipped).
    seed
        For the ``random`` strategy and the GMM.
    cancel
        Checked between images.

    Raises
    ------
    TrainingDataError
        No model yet.
    """
    state = state or require_state(store, "train first, then rank the images")
    schedule = schedule or Schedule()
    t = max(state.iteration - 1, 0) if t is None else t
    beta, gamma = schedule.beta(t), schedule.gamma(t)
    bg = background_classes(store) if background is None else list(background)
    planes = _planes(store, names or store.image_names())
    done = done_items(store)
    reader = _ImageArrays(store)
    items: list[QueueItem] = []
    confs: list[np.ndarray] = []
    feats: list[np.ndarray] = []
    for i, (name, index, axis) in enumerate(planes):
        if cancel is not None:
            cancel.raise_if_cancelled()
        label = name if index is None else slice_name(name, axis, index)
        yield Progress(i, len(planes), f"scoring {label}")
        pred = yield from plane_prediction(store, name, state, index, predict_missing, cancel)
        if pred is None:
            continue
        labels, prov, valid = (
            reader.plane(name, index, key) for key in ("labels", "provenance", "valid")
        )
        for part in score_tiles(
            pred, beta, bg, labels, prov == PROVENANCE_HUMAN, valid, tile
        ):  # fmt: skip
            items.append(QueueItem(name, index, part.box, part.stats, axis=axis))
            confs.append(part.confidence)
            feats.append(part.features)
    yield Progress(len(planes), len(planes), "ranking")
    if items:
        covered = np.array([it.stats.human_fraction > 0 or it.key in done for it in items])
        prio = priorities(
            strategy,
            [it.stats for it in items],
            confidences=confs,
            features=np.stack(feats),
            covered=covered,
            seed=seed,
        )
        for it, p in zip(items, prio, strict=True):
            it.priority = float(p)
        order = rank_order(prio)
        open_ = [items[j] for j in order if items[j].key not in done]
        closed = [items[j] for j in order if items[j].key in done]
        n_human, _ = split_routes(len(open_), gamma)
        for r, it in enumerate(open_ + closed):
            it.rank = r
            it.route = "done" if it.key in done else ("human" if r < n_human else "machine")
        items = open_ + closed
    return Ranking(strategy, state.iteration, beta, gamma, tile, items)


def machine_annotate(
    store: ProjectStore,
    ranking: Ranking,
    delta: float | None = None,
    state: LoopState | None = None,
    margin: int = DEFAULT_MARGIN,
) -> dict[str, PushRecord]:
    """Push the current model's pseudo-labels above ``delta`` (HISE's δ; default the
    schedule's) into the items routed to the machine; one undoable push per image (or slice).

    Only unlabeled pixels change, as with every push.
    """
    delta = Schedule().delta if delta is None else delta
    state = state or load_state(store)
    groups: dict[tuple[str, int | None], list[Box]] = {}
    for it in ranking.by_route("machine"):
        groups.setdefault((it.image, it.index), []).append(it.box)
    out: dict[str, PushRecord] = {}
    for (name, index), boxes in groups.items():
        shape = store.image_info(name).spatial_shape[-2:]
        region = np.zeros(shape, bool)
        for r0, r1, c0, c1 in boxes:
            region[r0:r1, c0:c1] = True
        key = name if index is None else f"{name}[{index}]"
        out[key] = push_project_image(store, name, delta, region, state, margin, index=index)
    return out


def project_questions(
    store: ProjectStore,
    name: str,
    n: int = 1,
    *,
    index: int | None = None,
    min_distance: float = 16.0,
    state: LoopState | None = None,
    predict_missing: bool = True,
    labels: np.ndarray | None = None,
    avoid: Sequence[tuple[int, int]] = (),
    pred: Prediction | None = None,
) -> list[Question]:
    """The ``n`` unlabeled valid pixels of an image (slice) with the smallest margin between
    the two top classes, at least ``min_distance`` px apart (and from the pixels in ``avoid``,
    e.g. questions already skipped). ``labels`` (of the plane) replaces the stored labels, for
    a GUI whose latest strokes are not saved yet; ``pred`` (the current model's prediction of
    the plane, when the caller has it already) saves reading it again.

    Raises
    ------
    TrainingDataError
        No model yet, or no current prediction and ``predict_missing`` is off.
    """
    state = state or require_state(store)
    if pred is None:
        pred = run_to_end(plane_prediction(store, name, state, index, predict_missing))
    if pred is None:
        raise TrainingDataError(f"image {name!r} has no prediction by the current model")
    valid = store.valid_mask(name)
    if labels is None:
        labels = store.labels(name)
        labels = labels if index is None else labels[index]
    if index is not None:
        valid = valid[index]
    allowed = valid & (np.asarray(labels) == 0)
    d = int(np.ceil(min_distance))
    for r, c in avoid:
        allowed[max(r - d, 0) : r + d + 1, max(c - d, 0) : c + d + 1] = False
    return ask_pixels(
        pred.margin,
        allowed,
        n,
        min_distance,
        pred.probabilities,
        state.classifier.class_values,
    )


def answer_question(
    store: ProjectStore, name: str, row: int, col: int, value: int, *, index: int | None = None
) -> None:
    """Record a person's answer: pixel ``(row, col)`` is class ``value`` (a human label)."""
    if value not in {c.value for c in store.classes}:
        raise ValueError(f"class {value} is not one of the project's classes")
    with store.write_lock("answer a question"):
        now = store.label_state(name)
        labels, prov = now.labels.copy(), now.provenance.copy()
        at = (row, col) if index is None else (index, row, col)
        labels[at] = value
        prov[at] = PROVENANCE_HUMAN
        store.commit_labels(name, labels, prov, old=now, what="answer a question")


def project_suspects(
    store: ProjectStore,
    names: Sequence[str] | None = None,
    threshold: float = 0.9,
    min_pixels: int = 1,
    state: LoopState | None = None,
    predict_missing: bool = True,
) -> list[Suspect]:
    """Human labels that the current model contradicts with confidence ≥ ``threshold``, over
    the project's images (and slices), most suspect first."""
    state = state or require_state(store)
    reader = _ImageArrays(store)
    out: list[Suspect] = []
    for name, index, _ in _planes(store, names or store.image_names()):
        labels = reader.plane(name, index, "labels")
        prov = reader.plane(name, index, "provenance")
        human = prov == PROVENANCE_HUMAN
        if not human.any():
            continue
        pred = run_to_end(plane_prediction(store, name, state, index, predict_missing))
        if pred is None:
            continue
        for s in find_suspects(labels, human, pred.labels, pred.confidence, threshold, min_pixels):
            s.image, s.index = name, index
            out.append(s)
    out.sort(key=lambda s: -s.pixels * s.confidence)
    return out
