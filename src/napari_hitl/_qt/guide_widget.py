"""The *Guide the model* dock widget: test-time guiding by hints (Guide Me).

Paint a few hint pixels with a class (or type ``find``/``remove`` commands), Apply: the guiding
block between the head and the tail of the trained network is optimized on the hints (the
weights stay fixed) and the guided prediction replaces the preview. Reset drops the guide;
Accept pushes the guided prediction through the usual threshold filter (human labels untouched,
undo in the Learning loop). Thin over :mod:`napari_hitl.core.hints.project`; the work runs in a
worker thread with progress and Cancel.

Layers (updated in place by name, aligned with the image's labels layer):

- ``<image> hints``: the painted hints (class colours; not labels — never saved as labels);
- ``<image> guide change``: the new class where the guide changed the prediction;
- the Learning loop's ``<image> prediction`` / ``confidence`` / ``uncertainty`` / ``accepted``.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from napari_hitl._napari.layers import META, direct_colormap, load_stored_labels
from napari_hitl._napari.names import guide_layer_names, result_layer_names
from napari_hitl._napari.result_layers import ensure_layer, show_prediction, write_part
from napari_hitl._napari.shortcuts import GUIDE_SHORTCUTS
from napari_hitl._napari.view import plane_index, save_store_labels
from napari_hitl._qt.controls import button, hrow, job_progress, label
from napari_hitl._qt.dock import DockWidget, fill_class_combo
from napari_hitl._qt.jobs import JobRunner
from napari_hitl.core.choices import DEFAULT_MARGIN, DEFAULT_THRESHOLD
from napari_hitl.core.errors import HitlError
from napari_hitl.core.hints.guide import GuideConfig
from napari_hitl.core.hints.project import (
    GuideSession,
    accept_guided,
    apply_hints,
    hints_for,
    open_session,
)
from napari_hitl.core.loop import require_state
from napari_hitl.core.loop.accept import accept_mask

if TYPE_CHECKING:
    import napari


class GuideWidget(DockWidget):
    """Guide the trained model at test time by painted hints and typed commands."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.session: GuideSession | None = None
        self._session_key: tuple[str, str, int | None, str] | None = None

        self.class_combo = QComboBox()
        self.class_combo.setToolTip("The class the hint brush paints")
        self.hint_button = button(
            "Paint hints",
            "Paint or click a few pixels with their true class on the hints layer — Alt-B",
            checkable=True,
        )
        self.clear_hints_button = QPushButton("Clear hints")
        self.command_edit = QLineEdit()
        self.command_edit.setPlaceholderText("find water in top left; remove road in the bottom")
        self.command_edit.setToolTip(
            "find CLASS [in PLACE] / remove CLASS [in PLACE]; places: top left, top, middle, "
            "bottom right, left, … or cell R,C; separate commands with ';'. Enter applies."
        )
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(1, 500)
        self.steps_spin.setValue(GuideConfig().steps)
        self.steps_spin.setSuffix(" steps")
        self.threshold_spin = QDoubleSpinBox()
        self.threshold_spin.setRange(0.5, 1.0)
        self.threshold_spin.setSingleStep(0.01)
        self.threshold_spin.setValue(DEFAULT_THRESHOLD)
        self.threshold_spin.setToolTip("Accept only guided pixels at least this confident")
        self.apply_button = button("Apply", "Guide the network by the hints and commands — Alt-D")
        self.reset_button = button(
            "Reset", "Drop the guide and the hints; show the plain prediction"
        )
        self.accept_button = button(
            "Accept",
            "Push the guided prediction above the threshold into the labels (human labels "
            "untouched; Undo in the Learning loop) — Alt-O",
        )
        self.cancel_button = QPushButton("Cancel")
        self.progress = job_progress()
        self.jobs = JobRunner(self.progress)
        self.status = label(
            "Train a model (Learning loop), paint hints or type a command, Apply.", plain=True
        )  # class names show as typed

        layout = QVBoxLayout(self)
        form = QFormLayout()
        form.addRow("class", self.class_combo)
        layout.addLayout(form)
        layout.addLayout(hrow(self.hint_button, self.clear_hints_button))
        layout.addWidget(QLabel("command"))
        layout.addWidget(self.command_edit)
        form = QFormLayout()
        form.addRow("optimize", self.steps_spin)
        form.addRow("accept at", self.threshold_spin)
        layout.addLayout(form)
        row = QHBoxLayout()
        for b in (self.apply_button, self.reset_button, self.accept_button, self.cancel_button):
            row.addWidget(b)
        layout.addLayout(row)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.hint_button.toggled.connect(self.set_hint_mode)
        self.clear_hints_button.clicked.connect(self.clear_hints)
        self.class_combo.currentIndexChanged.connect(self._class_changed)
        self.command_edit.returnPressed.connect(self.apply)
        self.apply_button.clicked.connect(self.apply)
        self.reset_button.clicked.connect(self.reset)
        self.accept_button.clicked.connect(self.accept)
        self.cancel_button.clicked.connect(self.jobs.cancel)
        self.threshold_spin.valueChanged.connect(lambda _v: self._show_accepted())
        self.jobs.failed.connect(lambda _n, message: self.status.setText(message))
        self.connect_jobs(
            {"Alt-B": self.hint_button.toggle, "Alt-D": self.apply, "Alt-O": self.accept},
            GUIDE_SHORTCUTS,
        )
        self.refresh_classes()

    # ---------------------------------------------------------------- context
    def refresh_classes(self) -> None:
        """Fill the class choice from the open project (none open: left as it is)."""
        with contextlib.suppress(HitlError):
            fill_class_combo(self.class_combo, self.context()[0].classes)

    def _set_busy(self, busy: bool) -> None:
        for b in (self.apply_button, self.reset_button, self.accept_button):
            b.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)

    # ------------------------------------------------------------------ hints
    def hints_layer(self, create: bool = True) -> Any:
        """The hints layer of the shown image (created empty, hidden from the store)."""
        store, image, like = self.context()
        name = guide_layer_names(image)["hints"]
        if name in self.viewer.layers:
            return self.viewer.layers[name]
        if not create:
            return None
        meta = {META: {"role": "result", "store": str(store.path), "image": image}}
        layer, _ = ensure_layer(self.viewer, name, "labels", like, np.uint16,
                                colormap=direct_colormap(store.classes), opacity=1.0,
                                metadata=meta)  # fmt: skip
        layer.brush_size = 3
        return layer

    def set_hint_mode(self, on: bool) -> None:
        """Paint hints with the chosen class on the hints layer (off: back to the labels)."""
        if self.hint_button.isChecked() != on:
            self.hint_button.setChecked(on)
        try:
            _store, _image, like = self.context()
            layer = self.hints_layer()
        except HitlError as exc:
            self.show_error(exc)
            return
        if on:
            self.refresh_classes()
            layer.visible = True
            self._class_changed()
            self.viewer.layers.selection.active = layer
            layer.mode = "paint"
        else:
            layer.mode = "pan_zoom"
            self.viewer.layers.selection.active = like

    def _class_changed(self, *_: Any) -> None:
        value = self.class_combo.currentData()
        try:
            layer = self.hints_layer(create=False)
        except HitlError:
            return
        if layer is not None and value is not None:
            layer.selected_label = int(value)

    def clear_hints(self) -> None:
        """Erase the painted hints of the shown image."""
        try:
            layer = self.hints_layer(create=False)
        except HitlError:
            return
        if layer is not None:
            layer.data = np.zeros_like(np.asarray(layer.data))

    def painted_hints(self, index: int | None) -> np.ndarray | None:
        """The painted hints of the shown plane (class values, 0 = none)."""
        layer = self.hints_layer(create=False)
        if layer is None:
            return None
        data = np.asarray(layer.data)
        return data if index is None else data[index]

    # ------------------------------------------------------------------ guide
    def apply(self) -> bool:
        """Guide by the painted hints and the typed commands in a worker; returns whether it
        started."""
        try:
            store, image, layer = self.context()
            save_store_labels(self.viewer, store)
            state = require_state(store, "train first (Learning loop)")
        except (HitlError, ValueError) as exc:
            self.show_error(exc)
            return False
        index = plane_index(self.viewer, layer)
        painted = self.painted_hints(index)
        text = self.command_edit.text()
        if (painted is None or not painted.any()) and not text.strip():
            self.status.setText("Paint a few hint pixels (Paint hints) or type a command first.")
            return False
        config = GuideConfig(steps=self.steps_spin.value())
        key = (str(store.path), image, index, state.model_hash)
        session = self.session if self._session_key == key else None

        def job(token: Any) -> Any:
            s = session
            if s is None:
                s = yield from open_session(store, image, index, state=state, cancel=token)
            hints, commands = hints_for(s, painted=painted, commands=text)
            report = yield from apply_hints(s, hints, config, token, commands=commands, add=False)
            return s, report

        def done(result: Any) -> None:
            s, report = result
            self.session, self._session_key = s, key
            self.show_session(layer)
            change = s.change()
            moved = [
                f"{name} {a - b:+d}"
                for name, (b, a) in change["classes"].items()  # type: ignore[union-attr]
                if a != b
            ]
            self.status.setText(
                f"Guided by {report.hints} hint px"
                + (f" ({'; '.join(s.commands[-len(text.split(';')) :])})" if text.strip() else "")
                + f": energy {report.energy_before:.3f} → {report.energy_after:.3f} in "
                f"{report.steps} steps ({report.seconds:.2f} s). {change['changed_pixels']} px "
                f"changed class" + (f" ({', '.join(moved)} px)" if moved else "") + "."
            )

        return self.jobs.start("Guide", job, done)

    def show_session(self, like: Any) -> None:
        """Show the session's current prediction, what changed, and the accept preview."""
        s = self.session
        if s is None:
            return
        store, image, _layer = self.context()
        show_prediction(self.viewer, image, like, s.current, store.classes, index=s.index)
        names = guide_layer_names(image)
        meta = {META: {"role": "result", "store": str(store.path), "image": image}}
        change, _ = ensure_layer(self.viewer, names["change"], "labels", like, np.uint16,
                                 colormap=direct_colormap(store.classes), opacity=0.8,
                                 metadata=meta)  # fmt: skip
        diff = np.where(s.current.labels != s.plain.labels, s.current.labels, 0)
        write_part(change, diff.astype(np.uint16), s.index, None)
        change.visible = True
        self._show_accepted()
        self.viewer.layers.selection.active = like

    def accepted_mask(self) -> np.ndarray | None:
        """Pixels Accept would add now (unlabeled, confident, away from boundaries)."""
        s = self.session
        if s is None or s.guided is None:
            return None
        try:
            _store, _image, like = self.context()
        except HitlError:
            return None
        pred = s.guided
        labels = np.asarray(like.data)
        if s.index is not None:
            labels = labels[s.index]
        ok = accept_mask(pred.confidence, self.threshold_spin.value(), None, s.guide.valid,
                         predicted=pred.labels, margin=DEFAULT_MARGIN)  # fmt: skip
        return ok & (labels == 0)

    def _show_accepted(self) -> None:
        s = self.session
        accepted = self.accepted_mask()
        if s is None or accepted is None:
            return
        name = result_layer_names(s.name)["accepted"]
        if name in self.viewer.layers:
            part = np.where(accepted, s.current.labels, 0).astype(np.uint16)
            write_part(self.viewer.layers[name], part, s.index, None)

    def reset(self) -> None:
        """Drop the guide and the hints; show the plain prediction again."""
        self.clear_hints()
        s = self.session
        if s is None:
            return
        s.reset()
        try:
            _store, image, like = self.context()
        except HitlError:
            return
        self.show_session(like)
        names = guide_layer_names(image)
        if names["change"] in self.viewer.layers:
            self.viewer.layers[names["change"]].visible = False
        self.status.setText("Guide dropped: the preview is the plain prediction again.")

    def accept(self) -> int:
        """Push the guided prediction above the threshold into the labels; returns pixels."""
        s = self.session
        try:
            store, image, like = self.context()
            if s is None or s.guided is None or s.name != image:
                raise HitlError("nothing guided on this image yet: Apply hints first")
            save_store_labels(self.viewer, store)
            record = accept_guided(store, s, self.threshold_spin.value())
        except (HitlError, ValueError) as exc:
            self.show_error(exc)
            return 0
        load_stored_labels(like, store, image)
        self._show_accepted()
        self.status.setText(
            f"Accepted {record.count} guided pixels at confidence ≥ "
            f"{self.threshold_spin.value():.2f} (Undo in the Learning loop)."
        )
        return int(record.count)

    # ------------------------------------------------------------------ close
