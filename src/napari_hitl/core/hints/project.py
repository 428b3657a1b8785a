"""Test-time guiding of a project's model on one of its images (the CLI ``hint`` and the Guide
widget): hints → guided prediction → Accept through the usual threshold push, or Reset.

A :class:`GuideSession` holds the image's plain prediction, the guide and its guided
prediction. Nothing is written to the store until :func:`accept_guided`, which pushes the
guided prediction exactly like an ordinary push (confidence threshold, margin from predicted
boundaries, human labels untouched, undoable) and is refused when the project's model changed
meanwhile.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field, replace

import numpy as np

from napari_hitl.core.choices import DEFAULT_MARGIN, DEFAULT_THRESHOLD
from napari_hitl.core.errors import StaleDataError
from napari_hitl.core.hints.commands import (
    COMMAND_LR,
    GRID,
    Command,
    command_hints,
    parse_commands,
)
from napari_hitl.core.hints.guide import GuideConfig, GuideReport, Hints, ImageGuide
from napari_hitl.core.learning.prediction import Prediction
from napari_hitl.core.loop import (
    LoopState,
    check_index,
    load_state,
    normalized_window,
    require_state,
    stack_depth,
)
from napari_hitl.core.loop.accept import PushRecord, accept_mask, store_push
from napari_hitl.core.progress import CancelToken, Progress, relay
from napari_hitl.core.store import LABEL_DTYPE, ProjectStore


@dataclass
class GuideSession:
    """One image plane being guided.

    Attributes
    ----------
    name, index
        The image (and slice of a stack).
    state
        The model it guides (its hash is checked again on Accept).
    guide
        The :class:`ImageGuide` (block, hints).
    plain
        The prediction without guide.
    guided
        The guided prediction (``None`` until hints were applied, and after :meth:`reset`).
    commands
        The commands applied so far (for the record).
    reports
        One :class:`GuideReport` per Apply.
    """

    name: str
    index: int | None
    state: LoopState
    guide: ImageGuide
    plain: Prediction
    guided: Prediction | None = None
    commands: list[str] = field(default_factory=list)
    reports: list[GuideReport] = field(default_factory=list)

    @property
    def current(self) -> Prediction:
        """The guided prediction if any, else the plain one."""
        return self.guided if self.guided is not None else self.plain

    def reset(self) -> None:
        """Drop the guide, its hints and the guided prediction."""
        self.guide.reset()
        self.guided = None
        self.commands.clear()
        self.reports.clear()

    def change(self) -> dict[str, object]:
        """What the guide changed: pixels whose class changed, and class counts before/after."""
        valid = (
            self.guide.valid
            if self.guide.valid is not None
            else np.ones(self.plain.labels.shape, bool)
        )
        after = self.current.labels
        values = self.state.classifier.class_values
        names = self.state.classifier.class_names
        return {
            "changed_pixels": int(((after != self.plain.labels) & valid).sum()),
            "classes": {
                str(n): [int((self.plain.labels == v).sum()), int((after == v).sum())]
                for v, n in zip(values, names, strict=True)
            },
        }


def open_session(
    store: ProjectStore,
    name: str,
    index: int | None = None,
    *,
    layer: str | None = None,
    knots: tuple[int, int] | None = None,
    state: LoopState | None = None,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, GuideSession]:
    """Read image ``name`` (slice ``index``), predict it plainly; returns a :class:`GuideSession`.

    Raises
    ------
    TrainingDataError
        No model yet.
    GuideError
        The model is not a network (the random forest cannot be guided) or the layer is wrong.
    """

    state = state or require_state(store)
    info = store.image_info(name)
    index = check_index(info, index)
    clf = state.classifier
    x, valid = normalized_window(store, name, clf.normalization, index=index)
    guide = ImageGuide(clf, x, valid, layer, knots)
    plain = yield from guide.predict_job(cancel=cancel, guided=False)
    return GuideSession(name, index, state, guide, plain)


def hints_for(
    session: GuideSession,
    *,
    points: list[tuple[int, int, int | str]] | None = None,
    painted: np.ndarray | None = None,
    commands: str | None = None,
    grid: int = GRID,
    seed: int = 0,
) -> tuple[Hints, list[Command]]:
    """Hints from clicked ``points`` ``(row, col, class value or name)``, a ``painted`` label
    image (class values, 0 = none) and/or typed ``commands``; commands are read against the
    session's current prediction."""
    from napari_hitl.core.explain.project import class_position

    clf = session.state.classifier
    hints = Hints.empty()
    if points:
        rows, cols, classes = zip(*points, strict=True)
        hints = hints + Hints.points(rows, cols, [class_position(clf, c) for c in classes])
    if painted is not None and painted.any():
        hints = hints + Hints.from_mask(painted, list(clf.class_values))
    parsed: list[Command] = []
    if commands and commands.strip():
        parsed = parse_commands(commands, clf.class_names, clf.class_values, grid)
        cur = session.current
        hints = hints + command_hints(
            parsed, cur.labels, cur.probabilities, clf.class_values, session.guide.valid, seed=seed
        )
    return hints, parsed


def apply_hints(
    session: GuideSession,
    hints: Hints,
    config: GuideConfig | None = None,
    cancel: CancelToken | None = None,
    *,
    commands: list[Command] | None = None,
    add: bool = True,
) -> Generator[Progress, None, GuideReport]:
    """Guide by ``hints`` and predict; a generator (2 parts).

    The guide continues from its current vectors; with ``add`` the hints join the earlier ones,
    otherwise they replace them (the Guide widget passes every painted hint each time). With
    ``commands`` and no learning rate set, the commands' smaller rate
    (:data:`~napari_hitl.core.hints.commands.COMMAND_LR`) is used.
    """
    if commands and (config is None or config.lr is None):
        config = replace(config or GuideConfig(), lr=COMMAND_LR)
    report = yield from relay(
        session.guide.fit_job(hints, config, cancel, add=add), 0, 2, "guiding"
    )
    session.guided = yield from relay(session.guide.predict_job(cancel=cancel), 1, 2, "")
    session.reports.append(report)
    session.commands.extend(c.describe() for c in commands or [])
    return report


def accept_guided(
    store: ProjectStore,
    session: GuideSession,
    threshold: float = DEFAULT_THRESHOLD,
    margin: int = DEFAULT_MARGIN,
) -> PushRecord:
    """Push the guided prediction into the labels, as an ordinary push (undoable).

    Raises
    ------
    StaleDataError
        Nothing was guided, or the project's model changed since the session opened.
    """
    if session.guided is None:
        raise StaleDataError("nothing guided yet: apply hints first (or push the plain prediction)")
    latest = load_state(store)
    if latest is None or latest.model_hash != session.state.model_hash:
        raise StaleDataError(
            "the project's model changed since this image was guided: guide it again"
        )
    info = store.image_info(session.name)
    valid = store.valid_mask(session.name)
    pred = session.guided
    if not stack_depth(info):
        accept = accept_mask(
            pred.confidence, threshold, None, valid, predicted=pred.labels, margin=margin
        )
        return store_push(store, session.name, pred.labels, accept, latest.iteration)
    z = session.index
    predicted = np.zeros(info.spatial_shape, LABEL_DTYPE)
    predicted[z] = pred.labels
    accept = np.zeros(info.spatial_shape, bool)
    accept[z] = accept_mask(
        pred.confidence, threshold, None, valid[z], predicted=pred.labels, margin=margin
    )
    return store_push(store, session.name, predicted, accept, latest.iteration)
