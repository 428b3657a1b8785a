"""Live mode of the loop widget: training goes on in a worker thread while the person paints, and
the prediction of the visible part of the image refreshes after each stroke.

The GUI thread saves each stroke into the project store (a few milliseconds) and posts the labels
to the trainer's :class:`~napari_hitl.core.loop.live.LiveInbox`; camera moves post the visible box.
The worker (:func:`~napari_hitl.core.loop.live.live_training`) trains a round, predicts the box and
yields the result, which is written into the result layers here. Painting never waits for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QObject, QTimer, Signal

from napari_hitl._napari.layers import save_layer_labels
from napari_hitl._napari.result_layers import Box
from napari_hitl._napari.view import camera
from napari_hitl.core.errors import HitlError
from napari_hitl.core.loop.live import LiveInbox, LiveSettings, LiveUpdate, live_training

if TYPE_CHECKING:
    from napari_hitl._qt.loop.host import LoopHost


def visible_box(viewer: Any, layer: Any) -> Box | None:
    """The part of ``layer`` (in its pixels) that the canvas shows, or ``None`` if unknown."""
    h, w = (float(v) for v in viewer.canvas.size)
    zoom = float(camera(viewer).zoom)
    if zoom <= 0 or h <= 0 or w <= 0:
        return None
    cy, cx = np.asarray(camera(viewer).center, float)[-2:]
    point = np.asarray(viewer.dims.point, float)
    corners = []
    for dy, dx in ((-h, -w), (h, w)):
        p = point.copy()
        p[-2:] = cy + dy / (2 * zoom), cx + dx / (2 * zoom)
        corners.append(np.asarray(layer.world_to_data(p), float)[-2:])
    lo, hi = np.minimum(*corners), np.maximum(*corners)
    return int(np.floor(lo[0])), int(np.ceil(hi[0])), int(np.floor(lo[1])), int(np.ceil(hi[1]))


class LiveController(QObject):
    """Runs one live session (or one *Update* round) for the loop widget."""

    state_changed = Signal(bool)  # live on / off

    def __init__(self, widget: LoopHost, settings: LiveSettings | None = None) -> None:
        super().__init__(widget)
        self.widget = widget
        self.settings = settings or LiveSettings()
        self.inbox: LiveInbox | None = None
        self.once = False
        self.rounds = 0
        self.last_update: LiveUpdate | None = None
        self._layer: Any = None
        self._where: tuple[Any, str, int | None] | None = None  # store, image, slice
        widget.jobs.update.connect(self._on_update)

    @property
    def active(self) -> bool:
        """Whether a live session (or an Update) is running."""
        return self.inbox is not None

    def start(self, once: bool = False) -> bool:
        """Start live training (``once``: a single round, the *Update* button)."""
        w = self.widget
        if self.active or w.jobs.busy:
            return False
        try:
            store, image, layer = w.context()
            w.save_human_edits(store, image, layer)
            index = w.plane_index()
        except (HitlError, ValueError) as exc:
            w.show_error(exc)
            return False
        inbox = LiveInbox()
        self._post(inbox, store, image, index)
        inbox.set_view(visible_box(w.viewer, layer))
        config = w.train_config()
        self.inbox, self.once, self.rounds = inbox, once, 0
        self._layer, self._where = layer, (store, image, index)
        layer.events.paint.connect(self._on_paint)
        camera(w.viewer).events.center.connect(self._on_view)
        camera(w.viewer).events.zoom.connect(self._on_view)
        started = w.jobs.start(
            "Update" if once else "Live",
            lambda token: live_training(
                store,
                image,
                inbox,
                config,
                self.settings,
                cancel=token,
                max_rounds=1 if once else None,
                index=index,
            ),
            self._done,
        )
        if not started:
            self._disconnect()
            return False
        w.jobs.finished.connect(self._finished)
        self.state_changed.emit(True)
        return True

    def stop(self) -> None:
        """End the session: the trainer calibrates and saves the model, then the image is
        predicted in full (so *Add predictions* can use it)."""
        if self.inbox is not None:
            self.inbox.request_stop()

    # ------------------------------------------------------------------ events
    def _post(self, inbox: LiveInbox, store: Any, image: str, index: int | None) -> None:
        sel = () if index is None else (index,)
        inbox.post_labels(store.labels(image)[sel], store.provenance(image)[sel])

    def _on_paint(self, _event: Any = None) -> None:
        """A stroke ended: save it and hand the labels to the trainer (on the next turn of the
        event loop: napari emits ``paint`` before it writes a single dab)."""
        QTimer.singleShot(0, self._save_and_post)

    def _save_and_post(self) -> None:
        if self.inbox is None or self._where is None:
            return
        store, image, index = self._where
        try:
            save_layer_labels(store, self._layer)
        except (HitlError, ValueError) as exc:
            self.widget.show_error(exc)
            return
        self._post(self.inbox, store, image, index)

    def _on_view(self, _event: Any = None) -> None:
        if self.inbox is not None and self._layer is not None:
            self.inbox.set_view(visible_box(self.widget.viewer, self._layer))

    def _on_update(self, update: Any) -> None:
        if not isinstance(update, LiveUpdate) or self._where is None:
            return
        self.rounds += 1
        self.last_update = update
        w = self.widget
        if update.prediction is None:
            w.status.setText(update.message)
            return
        store, image, index = self._where
        w.show_prediction(store, image, self._layer, update.prediction, index, update.box)
        w.status.setText(update.message)

    def _done(self, state: Any) -> None:
        w = self.widget
        if state is None:
            w.status.setText("Live stopped before any training: paint two classes.")
            return
        w.status.setText(
            f"Live model saved as iteration {state.iteration} after {self.rounds} rounds."
        )
        w.after_live = True  # predict the image once the job slot is free: Add needs it

    def _finished(self, _name: str) -> None:
        self.widget.jobs.finished.disconnect(self._finished)
        self._disconnect()
        self.state_changed.emit(False)

    def _disconnect(self) -> None:
        if self._layer is not None:
            self._layer.events.paint.disconnect(self._on_paint)
        events = camera(self.widget.viewer).events
        events.center.disconnect(self._on_view)
        events.zoom.disconnect(self._on_view)
        self.inbox, self._layer, self._where = None, None, None
