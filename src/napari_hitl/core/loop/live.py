"""Live training: the model keeps learning in the background while the person paints.

The paper's future work (§4 of ``000_7a30bae00155e0f5``: "online training while the user
labels"). A front end (the napari widget, a test, a script) runs :func:`live_training` in a
worker thread and talks to it through a :class:`LiveInbox`:

- after every brush stroke it posts the image's labels and provenance
  (:meth:`LiveInbox.post_labels`; of the slice on show for a stack);
- when the view moves it posts the visible box (:meth:`LiveInbox.set_view`);
- to end the session it calls :meth:`LiveInbox.request_stop` (the model is then calibrated and
  saved as the next iteration) or cancels the token (nothing is saved).

Each *round* trains a few warm optimizer steps on the latest labels, then predicts only the
visible box and yields a :class:`LiveUpdate` — about 1 s on 2 cores for a 512 × 512 view with the
U-Net; a stroke shows in the view after 1.5 rounds on average (``benchmarks/live_latency.py``
measures it; figures in ``docs/benchmarks.md``). When no new labels arrive for
``idle_rounds`` rounds the trainer pauses and only re-predicts when the view moves, so an idle
session costs no CPU.

Live rounds are plain warm steps (no shrink towards the initial weights, no held-out strokes):
they are many and short (counted in steps even under ``TrainConfig.time_budget``, which only
the first round of a fresh model uses), and the temperature of the last calibration is kept.
The final save runs one round with held-out strokes, so the saved model is calibrated like any
trained one.
The novelty gate (``TrainConfig.novelty_gate``) is fitted in that final round only: fitting it
costs a forward pass over every stroked tile, which doubled the time from stroke to refreshed
view (median 1.73 → 3.69 s); the rounds' previews show the ungated confidence.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, replace

import numpy as np

from napari_hitl.core.learning.data import LabeledImage, TrainingDataError, make_labeled_image
from napari_hitl.core.learning.net import MODEL_DEFAULTS, TrainConfig
from napari_hitl.core.learning.prediction import Prediction, predict_normalized
from napari_hitl.core.loop import (
    Box,
    LoopState,
    classifier_for_training,
    clip_region,
    context_window,
    normalized_window,
    save_latest,
    slice_name,
    training_images,
)
from napari_hitl.core.progress import CancelToken, Progress, run_to_end
from napari_hitl.core.store import ProjectStore


@dataclass
class LiveSettings:
    """How a live session trains.

    Attributes
    ----------
    round_steps
        Warm optimizer steps per round (each round ends with a prediction of the view). Fewer
        steps refresh the view sooner after a stroke; 5 of the former 64² crops (15 of the
        cheaper 16² crops, and of today's 8² crops: median 1.4–1.7 s) kept the 512² view's
        refresh under 2 s (``benchmarks/live_latency.py``).
    idle_rounds
        Rounds without new labels after which training pauses until the next stroke.
    poll_seconds
        How often a paused session looks for new labels, a new view or a stop request.
    lr_factor
        Live rounds use this share of the model's learning rate: at the full rate the view's
        accuracy jumped by up to ±0.1 from round to round on the sample scene; at 0.3 it moves
        by ±0.01 (many short rounds add up to a long training run).
    """

    round_steps: int = 15
    idle_rounds: int = 6
    poll_seconds: float = 0.05
    lr_factor: float = 0.3


@dataclass
class LiveUpdate:
    """What one live round produced.

    Attributes
    ----------
    round
        1-based round number.
    box
        ``(row0, row1, col0, col1)`` of ``prediction`` in the image.
    prediction
        The prediction of ``box`` only (``None`` when the round could not train, see
        ``message``).
    trained
        Whether the round trained (``False``: the view moved while training was paused).
    labels_version
        The :class:`LiveInbox` labels version the model had seen.
    seconds
        Wall time of the round (training + prediction).
    message
        A line for the status bar.
    """

    round: int
    box: Box
    prediction: Prediction | None
    trained: bool
    labels_version: int
    seconds: float
    message: str


@dataclass
class _Snapshot:
    version: int
    labels: np.ndarray | None
    provenance: np.ndarray | None
    box: Box | None
    stop: bool


class LiveInbox:
    """Thread-safe mailbox from the front end to :func:`live_training`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._version = 0
        self._labels: np.ndarray | None = None
        self._provenance: np.ndarray | None = None
        self._box: Box | None = None
        self._stop = False

    def post_labels(self, labels: np.ndarray, provenance: np.ndarray) -> int:
        """Hand over the image's current labels and provenance (copied); returns their version."""
        labels, provenance = np.array(labels, copy=True), np.array(provenance, copy=True)
        with self._lock:
            self._labels, self._provenance = labels, provenance
            self._version += 1
            version = self._version
        self._wake.set()
        return version

    def set_view(self, box: Box | None) -> None:
        """The visible box ``(row0, row1, col0, col1)`` (``None``: the whole image)."""
        with self._lock:
            changed = box != self._box
            self._box = box
        if changed:
            self._wake.set()

    def request_stop(self) -> None:
        """End the session after the current round; the model is calibrated and saved."""
        with self._lock:
            self._stop = True
        self._wake.set()

    @property
    def version(self) -> int:
        """The version of the last posted labels (0 before any)."""
        with self._lock:
            return self._version

    def take(self) -> _Snapshot:
        """The current state (the trainer's side)."""
        with self._lock:
            self._wake.clear()
            return _Snapshot(self._version, self._labels, self._provenance, self._box, self._stop)

    def wait(self, timeout: float) -> None:
        """Sleep until something is posted or ``timeout`` seconds pass."""
        self._wake.wait(timeout)


def clip_box(box: Box | None, shape: tuple[int, int]) -> Box:
    """``box`` clipped to an image of ``shape``; the whole image for ``None`` or a box with no
    pixel inside it (the view panned off the image)."""
    if box is not None:
        with contextlib.suppress(ValueError):
            return clip_region(box, shape)
    return 0, shape[0], 0, shape[1]


def predict_box(
    classifier, x: np.ndarray, valid: np.ndarray, box: Box, cancel: CancelToken | None = None
) -> Generator[Progress, None, Prediction]:
    """Predict the box of a normalized ``C, H, W`` image, with the context the network needs
    around it (:func:`~napari_hitl.core.loop.context_window`), so that the box's pixels equal a
    prediction of the whole image."""
    (y0, y1, x0, x1), inner = context_window(classifier, box, x.shape[-2:])
    pred = yield from predict_normalized(
        classifier, x[:, y0:y1, x0:x1], valid[y0:y1, x0:x1], "auto", cancel
    )
    return pred.crop(*inner)


def live_training(
    store: ProjectStore,
    image: str,
    inbox: LiveInbox,
    config: TrainConfig | None = None,
    settings: LiveSettings | None = None,
    cancel: CancelToken | None = None,
    max_rounds: int | None = None,
    index: int | None = None,
) -> Generator[Progress | LiveUpdate | None, None, LoopState | None]:
    """Train in rounds on the labels posted to ``inbox`` and predict the visible box each round.

    A generator: it yields a :class:`LiveUpdate` after each round, :class:`Progress` while it
    saves, and ``None`` while paused (a heartbeat, so a worker thread can stop it). It ends
    after ``max_rounds`` rounds or when :meth:`LiveInbox.request_stop` is called; it then fits
    the temperature on held-out strokes, saves the model as the store's ``latest`` checkpoint
    (the next iteration) and returns its :class:`LoopState` — or ``None`` when it never
    trained. Cancelling ``cancel`` stops it at once without saving.

    Labels of the other images of the project (and of the other slices of a stack) are read
    once at the start; the labels of ``image`` (slice ``index`` of a stack) come from the inbox
    (the store's when nothing was posted).

    Raises
    ------
    TrainingDataError, IncompatibleBandsError
        The project cannot train (no classes, images with other bands).
    ValueError
        A setting no training can use (:meth:`TrainConfig.check`), before anything is read.
    Cancelled
        ``cancel`` was set.
    """
    config = config or TrainConfig()
    config.check()  # before any image is read (the windows of big planes need the bank's scales)
    settings = settings or LiveSettings()
    names = store.image_names()
    clf, iteration = classifier_for_training(store, config, names)
    norm = clf.normalization
    info = store.image_info(image)
    plane = image if index is None else slice_name(image, info.axes[1], index)
    others = [
        im
        for im in training_images(store, names, norm, config.machine_weight, config.filter_bank)
        if im.name != plane
    ]
    x, valid = normalized_window(store, image, norm, index=index)
    values = [c.value for c in store.classes]
    sel = () if index is None else (index,)
    stored = (store.labels(image)[sel], store.provenance(image)[sel])
    round_config = replace(
        config,
        warm_steps=settings.round_steps,
        time_budget=None,  # rounds are short and counted in steps
        warm_shrink=1.0,
        holdout_fraction=0.0,
        precise_bn=False,
        novelty_gate=0.0,  # fitted once, when the session ends (see the module's docstring)
        lr=float(config.lr or MODEL_DEFAULTS.get(clf.kind, {}).get("lr", 1e-3))
        * settings.lr_factor,
    )
    first_steps = int(config.steps or MODEL_DEFAULTS.get(clf.kind, {}).get("steps", 40))

    data: list[LabeledImage] = []
    seen, idle, rounds, trained_rounds = -1, 0, 0, 0
    last_box: Box | None = None
    blocked = ""  # why training cannot go on until new labels arrive
    while max_rounds is None or rounds < max_rounds:
        if cancel is not None:
            cancel.raise_if_cancelled()
        snap = inbox.take()
        if snap.stop:
            break
        box = clip_box(snap.box, x.shape[-2:])
        if snap.version != seen:
            labels, prov = (snap.labels, snap.provenance) if snap.labels is not None else stored
            current = make_labeled_image(
                plane, x, labels, prov, values, config.machine_weight, valid
            )
            data = [*others, current] if labels.any() else list(others)
            seen, idle, blocked = snap.version, 0, ""
        train_now = not blocked and idle < settings.idle_rounds
        if not train_now and (box == last_box or not clf.trained):
            inbox.wait(settings.poll_seconds)
            yield None  # a heartbeat: a worker thread running this can stop here
            continue
        t0 = time.perf_counter()
        trained = False
        if train_now:
            temperature = clf.temperature
            cfg = replace(round_config, seed=config.seed + rounds, steps=first_steps)
            if not clf.trained:  # the first round trains a fresh model as Train would
                cfg = replace(cfg, lr=config.lr, time_budget=config.time_budget)
            try:
                run_to_end(clf.fit(data, cfg, cancel))
            except TrainingDataError as exc:
                blocked = str(exc)
                rounds += 1
                yield LiveUpdate(rounds, box, None, False, seen, 0.0, f"Live: {blocked}")
                continue
            if trained_rounds:  # live rounds keep the last calibration
                clf.temperature = temperature
            trained, idle, trained_rounds = True, idle + 1, trained_rounds + 1
        pred = run_to_end(predict_box(clf, x, valid, box, cancel))
        rounds += 1
        last_box = box
        seconds = time.perf_counter() - t0
        state = "training" if idle < settings.idle_rounds else "paused until the next stroke"
        yield LiveUpdate(
            rounds,
            box,
            pred,
            trained,
            seen,
            seconds,
            f"Live round {rounds} ({seconds:.1f} s, {state}).",
        )
    if not trained_rounds:
        return None
    yield Progress(0, 1, "live: calibrating and saving the model")
    calibration = replace(
        round_config,
        holdout_fraction=config.holdout_fraction,
        seed=config.seed + rounds,
        novelty_gate=config.novelty_gate,
    )
    with contextlib.suppress(TrainingDataError):  # too few strokes to hold out: keep T
        run_to_end(clf.fit(data, calibration, cancel))
    state = save_latest(store, clf, iteration, {**config.to_json(), "live_rounds": trained_rounds})
    yield Progress(1, 1, "live: model saved")
    return state
