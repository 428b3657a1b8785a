"""The Learning loop's background prediction: the whole image, block by block, into the store.

A button of the loop widget starts :func:`napari_hitl.core.loop.batch.predict_store_image` in
its own worker thread, with its own progress bar and Cancel, so the person goes on painting (or
predicting the visible part in Live mode) while it runs. A cancelled run resumes where it stopped
the next time. When it ends, the stored prediction is shown in the result layers if the image is
small enough to hold in memory (:data:`SHOW_MAX_PIXELS`); otherwise it stays in the store, where
Add predictions and ``napari-hitl push`` use it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import QHBoxLayout

from napari_hitl._qt.controls import button, job_progress
from napari_hitl._qt.jobs import JobRunner
from napari_hitl.core.errors import HitlError
from napari_hitl.core.loop import current_prediction, load_state, require_state
from napari_hitl.core.loop.batch import BatchReport, predict_store_image

if TYPE_CHECKING:
    from napari_hitl._qt.loop.host import LoopHost

SHOW_MAX_PIXELS = 4096 * 4096  # larger predictions stay in the store (not loaded into layers)
JOB_NAME = "Background prediction"


class BackgroundPrediction:
    """The "Predict into store" button, its progress bar and its worker."""

    def __init__(self, widget: LoopHost) -> None:
        self.widget = widget
        self.button = button(
            "Predict into store",
            "Predict the whole image block by block into the project store in the background "
            "(any image size; keep painting meanwhile). Click again to cancel; the next run "
            "resumes where it stopped.",
        )
        self.progress = job_progress()
        self.jobs = JobRunner(self.progress)
        self.last_report: BatchReport | None = None
        self.button.clicked.connect(self.start_or_cancel)
        self.jobs.started.connect(lambda _n: self.button.setText("Cancel prediction"))
        self.jobs.finished.connect(lambda _n: self.button.setText("Predict into store"))
        self.jobs.cancelled.connect(
            lambda _n: widget.status.setText(
                "Background prediction cancelled; the finished blocks are kept and the next run "
                "resumes from them."
            )
        )
        self.jobs.failed.connect(
            lambda _n, msg: widget.status.setText(f"Background prediction failed: {msg}")
        )

    def row(self) -> QHBoxLayout:
        """The button and the progress bar, for the widget's layout."""
        row = QHBoxLayout()
        row.addWidget(self.button)
        row.addWidget(self.progress, 1)
        return row

    def start_or_cancel(self) -> bool:
        """Cancel the running prediction, or start one; returns whether one started."""
        if self.jobs.busy:
            self.jobs.cancel()
            return False
        return self.start()

    def start(self, chunk: int | None = None) -> bool:
        """Save the painted labels and start predicting the current image into the store."""
        widget = self.widget
        try:
            store, image, layer = widget.context()
            widget.save_labels_now()
            state = require_state(store, "paint a few pixels of each class and Train")
        except HitlError as exc:
            widget.show_error(exc)
            return False

        def done(report: BatchReport) -> None:
            self.last_report = report
            line = (
                f"Stored the prediction of {image} ({report.computed} blocks computed"
                + (f", {report.skipped} done before" if report.skipped else "")
                + f", {report.seconds:.1f} s)."
            )
            index = widget.plane_index()
            h, w = store.image_info(image).spatial_shape[-2:]
            if h * w <= SHOW_MAX_PIXELS and load_state(store) is not None:
                pred = current_prediction(store, image, state, index=index)
                if pred is not None:
                    widget.show_prediction(store, image, layer, pred, index)
                    line += " Move the threshold, then Add predictions."
            else:
                line += " It is too large to show here; Add predictions uses it."
            widget.status.setText(line)

        return self.jobs.start(
            JOB_NAME,
            lambda token: predict_store_image(store, image, state, chunk=chunk, cancel=token),
            done,
        )

    def busy(self) -> bool:
        """Whether a background prediction runs."""
        return self.jobs.busy

    def stop(self, wait: bool = True) -> Any:
        """Cancel (and by default wait for) a running prediction, e.g. when the widget closes."""
        self.jobs.cancel()
        if wait:
            self.jobs.wait()
