"""The Learning-loop dock widget: Train → Infer & filter → threshold → Add predictions → Undo.

Thin: every action calls :mod:`napari_hitl.core.loop` / :mod:`napari_hitl.core.feedback` on the
project store behind the chosen labels layer; training and inference run in worker threads
(:class:`~napari_hitl._qt.jobs.JobRunner`) so napari never freezes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_hitl._napari.layers import META, direct_colormap
from napari_hitl._qt.jobs import JobRunner
from napari_hitl._qt.shortcuts import LOOP_SHORTCUTS, bind_shortcuts, shortcut_tooltip
from napari_hitl.core.classifier import TrainConfig
from napari_hitl.core.data import TrainingDataError
from napari_hitl.core.errors import HitlError
from napari_hitl.core.feedback import (
    DEFAULT_MARGIN,
    DEFAULT_THRESHOLD,
    accept_mask,
    store_clear_machine,
    store_undo,
)
from napari_hitl.core.loop import (
    load_state,
    predict_project_image,
    push_project_image,
    train_project,
)
from napari_hitl.core.models import DEFAULT_MODEL, MODEL_HELP, MODEL_NAMES
from napari_hitl.core.prediction import Prediction
from napari_hitl.core.store import ProjectStore

if TYPE_CHECKING:
    import napari


def result_layer_names(image: str) -> dict[str, str]:
    """Names of the result layers of ``image`` (updated in place by these names)."""
    return {
        "prediction": f"{image} prediction",
        "confidence": f"{image} confidence",
        "uncertainty": f"{image} uncertainty",
        "accepted": f"{image} accepted",
        "region": f"{image} region",  # a Shapes rectangle drawn by the person
    }


class LoopWidget(QWidget):
    """Drive the learning loop on the image behind a napari-hitl labels layer."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.prediction: Prediction | None = None
        self._predicted_image: str | None = None

        self.labels_combo = QComboBox()
        self.model_combo = QComboBox()
        for name in MODEL_NAMES:
            self.model_combo.addItem(name)
            self.model_combo.setItemData(self.model_combo.count() - 1, MODEL_HELP[name],
                                         Qt.ItemDataRole.ToolTipRole)  # fmt: skip
        self.model_combo.setCurrentText(DEFAULT_MODEL)
        self.train_button = QPushButton("Train")
        self.infer_button = QPushButton("Infer && filter")
        self.threshold_slider = QSlider(Qt.Orientation.Horizontal)
        self.threshold_slider.setRange(50, 100)
        self.threshold_slider.setValue(round(DEFAULT_THRESHOLD * 100))
        self.threshold_label = QLabel()
        self.margin_spin = QSpinBox()
        self.margin_spin.setRange(0, 10)
        self.margin_spin.setValue(DEFAULT_MARGIN)
        self.margin_spin.setSuffix(" px")
        self.margin_spin.setToolTip(
            "Keep accepted pixels this far inside a confident region of one class: wrong "
            "confident pixels sit on class boundaries (0 = accept every pixel above the threshold)"
        )
        self.add_button = QPushButton("Add predictions")
        self.undo_button = QPushButton("Undo push")
        self.clear_button = QPushButton("Clear machine labels")
        self.region_button = QPushButton("Region…")
        self.shortcuts_label = QLabel("<i>Shortcuts: Alt-T/I/A/U, Alt-1…9 (hover)</i>")
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setVisible(False)
        self.status = QLabel("Paint a few pixels of each class, then Train.")
        self.status.setWordWrap(True)
        self.areas = QLabel()
        self.areas.setWordWrap(True)
        self.jobs = JobRunner(self.progress)

        form = QFormLayout()
        form.addRow("Labels layer", self.labels_combo)
        form.addRow("Model", self.model_combo)
        thr = QHBoxLayout()
        thr.addWidget(self.threshold_slider)
        thr.addWidget(self.threshold_label)
        push_row = QHBoxLayout()
        push_row.addWidget(self.add_button)
        push_row.addWidget(self.undo_button)
        push_row.addWidget(self.region_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.train_button)
        layout.addWidget(self.infer_button)
        layout.addWidget(QLabel("Confidence threshold"))
        layout.addLayout(thr)
        margin_form = QFormLayout()
        margin_form.addRow("Boundary margin", self.margin_spin)
        layout.addLayout(margin_form)
        layout.addLayout(push_row)
        layout.addWidget(self.clear_button)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.areas)
        layout.addWidget(self.shortcuts_label)
        layout.addStretch(1)
        for button, tip in (
            (self.train_button, "Train on the labels of every image of the project (warm start)"),
            (self.infer_button, "Predict the current image; the slider then filters it instantly"),
            (self.add_button, "Add predicted pixels above the threshold to unlabeled pixels only"),
            (self.undo_button, "Undo the last Add predictions of this image"),
            (self.clear_button, "Remove every machine label of this image (human labels stay)"),
            (
                self.region_button,
                "Draw a rectangle: Add predictions then only adds pixels inside it "
                "(delete the rectangle to use the whole image)",
            ),
        ):
            button.setToolTip(tip)

        self.train_button.clicked.connect(self._train_or_cancel)
        self.infer_button.clicked.connect(self.infer)
        self.threshold_slider.valueChanged.connect(self._threshold_changed)
        self.margin_spin.valueChanged.connect(lambda _v: self._update_preview())
        self.add_button.clicked.connect(self.add_predictions)
        self.undo_button.clicked.connect(self.undo)
        self.clear_button.clicked.connect(self.clear_machine)
        self.jobs.started.connect(lambda _n: self._set_busy(True))
        self.jobs.finished.connect(lambda _n: self._set_busy(False))
        self.jobs.cancelled.connect(lambda n: self.status.setText(f"{n} cancelled."))
        self.jobs.failed.connect(lambda n, msg: self.status.setText(f"{n} failed: {msg}"))
        self.region_button.clicked.connect(self.draw_region)
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self._refresh_layers()
        self._threshold_changed(self.threshold_slider.value())
        actions = {
            "Alt-T": self._train_or_cancel,
            "Alt-I": self.infer,
            "Alt-A": self.add_predictions,
            "Alt-U": self.undo,
        }
        for i in range(1, 10):
            actions[f"Alt-{i}"] = lambda i=i: self.select_class(i)
        self._unbind_shortcuts = bind_shortcuts(self.viewer, actions)
        self.shortcuts_label.setToolTip(shortcut_tooltip(LOOP_SHORTCUTS))

    # ---------------------------------------------------------------- context
    @property
    def threshold(self) -> float:
        """The confidence threshold of the slider (0.50–1.00)."""
        return self.threshold_slider.value() / 100

    def labels_layer(self) -> Any:
        """The chosen labels layer (from a project store), or ``None``."""
        name = self.labels_combo.currentText()
        layers = self.viewer.layers  # a LayerList: no .get()
        return layers[name] if name in layers else None  # noqa: SIM401

    def context(self) -> tuple[ProjectStore, str, Any]:
        """(store, image name, labels layer) of the current choice.

        Raises
        ------
        HitlError
            No labels layer from a project store is open.
        """
        layer = self.labels_layer()
        meta = layer.metadata.get(META, {}) if layer is not None else {}
        if not meta.get("store"):
            raise HitlError("open a project (Project widget) or the sample data first")
        return ProjectStore.open(meta["store"], "a"), meta["image"], layer

    def _refresh_layers(self, *_: Any) -> None:
        current = self.labels_combo.currentText()
        names = [
            ly.name for ly in self.viewer.layers
            if ly.metadata.get(META, {}).get("role") == "labels"
        ]  # fmt: skip
        self.labels_combo.blockSignals(True)
        self.labels_combo.clear()
        self.labels_combo.addItems(names)
        if current in names:
            self.labels_combo.setCurrentText(current)
        self.labels_combo.blockSignals(False)

    def _set_busy(self, busy: bool) -> None:
        self.train_button.setText("Cancel" if busy and self.jobs.name == "Training" else "Train")
        for b in (self.infer_button, self.add_button, self.undo_button, self.clear_button):
            b.setEnabled(not busy)
        self.train_button.setEnabled(not busy or self.jobs.name == "Training")

    def _error(self, exc: BaseException) -> None:
        from napari.utils.notifications import show_error

        self.status.setText(str(exc))
        show_error(str(exc))

    def _save_human_edits(self, store: ProjectStore, image: str, layer: Any) -> None:
        store.save_edited_labels(image, np.asarray(layer.data))

    # ---------------------------------------------------------------- actions
    def _train_or_cancel(self) -> None:
        if self.jobs.busy and self.jobs.name == "Training":
            self.jobs.cancel()
        else:
            self.train()

    def train(self, config: TrainConfig | None = None) -> bool:
        """Save the painted labels, then train in a worker thread; returns whether it started."""
        try:
            store, image, layer = self.context()
            self._save_human_edits(store, image, layer)
            if not any(store.labels(n).any() for n in store.image_names()):
                raise TrainingDataError(
                    "there are no labels yet: paint a few pixels of each class first"
                )
        except (HitlError, ValueError) as exc:
            self._error(exc)
            return False
        config = config or TrainConfig(model=self.model_combo.currentText())

        def done(result: Any) -> None:
            report, state = result
            self.status.setText(
                f"Trained {state.classifier.kind}, iteration {state.iteration} "
                f"({'warm start' if report.warm_start else 'fresh'}, {report.seconds:.1f} s, "
                f"temperature {report.temperature:.2f}). Now Infer & filter."
            )

        return self.jobs.start(
            "Training", lambda token: train_project(store, config, cancel=token), done
        )

    def infer(self) -> bool:
        """Predict the current image in a worker thread; results appear as layers."""
        try:
            store, image, layer = self.context()
            state = load_state(store)
            if state is None:
                raise HitlError("no model yet: paint a few pixels of each class and Train")
        except HitlError as exc:
            self._error(exc)
            return False

        def done(pred: Prediction) -> None:
            self.prediction, self._predicted_image = pred, image
            self._show_results(store, image, layer, pred)
            self.status.setText(
                f"Predicted {image} with iteration {state.iteration}. Move the threshold, then "
                "Add predictions."
            )

        return self.jobs.start(
            "Inference",
            lambda token: predict_project_image(store, image, state, cancel=token),
            done,
        )

    def _edit_labels(self, action: Any, message: Any) -> int:
        """Save the person's edits, apply ``action(store, image)`` to the stored labels, reload the
        layer and report; returns the pixel count ``action`` reports (0 on an error)."""
        try:
            store, image, layer = self.context()
            self._save_human_edits(store, image, layer)
            result = action(store, image)
        except (HitlError, ValueError) as exc:
            self._error(exc)
            return 0
        self._reload_labels(store, image, layer)
        self.status.setText(message(result))
        return int(getattr(result, "count", result))

    def add_predictions(self) -> int:
        """Push accepted pixels into the labels (human labels untouched); returns pixels added."""
        return self._edit_labels(
            lambda store, image: push_project_image(
                store, image, self.threshold, self.region_box(), margin=self.margin_spin.value()
            ),
            lambda rec: f"Added {rec.count} machine labels (iteration {rec.iteration}).",
        )

    def undo(self) -> int:
        """Undo the last push of the current image; returns pixels reverted."""
        return self._edit_labels(
            store_undo, lambda n: f"Undo: {n} pixels unlabeled again." if n else "Nothing to undo."
        )

    def clear_machine(self) -> int:
        """Remove every machine label of the current image."""
        return self._edit_labels(store_clear_machine, lambda n: f"Removed {n} machine labels.")

    # ---------------------------------------------------------------- layers
    def _reload_labels(self, store: ProjectStore, image: str, layer: Any) -> None:
        layer.data = store.labels(image)
        self._update_preview()
        self._update_areas()

    def _upsert(self, name: str, data: Any, kind: str, like: Any, **kwargs: Any) -> Any:
        """Update a layer in place by name, or add it aligned with ``like``."""
        if name in self.viewer.layers:
            target = self.viewer.layers[name]
            target.data = data
            return target
        add = getattr(self.viewer, f"add_{kind}")
        return add(data, name=name, scale=like.scale, translate=like.translate, **kwargs)

    def _show_results(self, store: ProjectStore, image: str, layer: Any, pred: Prediction) -> None:
        names = result_layer_names(image)
        cmap = direct_colormap(store.classes)
        self._upsert(names["prediction"], pred.labels, "labels", layer, colormap=cmap,
                     opacity=0.6, visible=False)  # fmt: skip
        self._upsert(names["confidence"], pred.confidence, "image", layer, colormap="magma",
                     contrast_limits=(0.0, 1.0), opacity=0.7, visible=False)  # fmt: skip
        self._upsert(names["uncertainty"], pred.entropy, "image", layer, colormap="viridis",
                     visible=False)  # fmt: skip
        self._upsert(names["accepted"], np.zeros_like(pred.labels), "labels", layer,
                     colormap=cmap, opacity=0.5)  # fmt: skip
        self.viewer.layers.selection.active = layer
        self._update_preview()
        self._update_areas()

    def _threshold_changed(self, value: int) -> None:
        self.threshold_label.setText(f"{value / 100:.2f}")
        self._update_preview()

    def accepted_mask(self) -> np.ndarray | None:
        """Pixels that Add predictions would add now (from the cached prediction, no inference)."""
        layer = self.labels_layer()
        if self.prediction is None or layer is None:
            return None
        pred = self.prediction
        accepted = accept_mask(
            pred.confidence,
            self.threshold,
            self.region_box(),
            predicted=pred.labels,
            margin=self.margin_spin.value(),
        )
        return accepted & (np.asarray(layer.data) == 0)

    def _update_preview(self) -> None:
        accepted = self.accepted_mask()
        if accepted is None or self._predicted_image is None:
            return
        name = result_layer_names(self._predicted_image)["accepted"]
        if name in self.viewer.layers:
            self.viewer.layers[name].data = np.where(accepted, self.prediction.labels, 0)
        share = accepted.mean()
        self.status.setText(
            f"{accepted.sum()} pixels ({share:.1%}) would be added at confidence "
            f"≥ {self.threshold:.2f}."
        )

    def _update_areas(self) -> None:
        layer = self.labels_layer()
        try:
            store, _image, _layer = self.context()
        except HitlError:
            return
        lines = []
        labels = np.asarray(layer.data)
        total = labels.size
        for c in store.classes:
            lab = float((labels == c.value).sum()) / total
            line = f"<span style='color:{c.color}'>■</span> {c.name}: labels {lab:.1%}"
            if self.prediction is not None:
                line += f", prediction {float((self.prediction.labels == c.value).mean()):.1%}"
            lines.append(line)
        self.areas.setText("<br>".join(lines))

    # ---------------------------------------------------------------- region, classes
    def draw_region(self) -> None:
        """Add (or select) the ``<image> region`` Shapes layer in rectangle mode."""
        try:
            _store, image, layer = self.context()
        except HitlError as exc:
            self._error(exc)
            return
        name = result_layer_names(image)["region"]
        if name not in self.viewer.layers:
            style = {"edge_color": "yellow", "face_color": "transparent", "edge_width": 2}
            added = self.viewer.add_shapes(
                name=name, scale=layer.scale, translate=layer.translate, **style
            )
            added.events.data.connect(lambda _e: self._update_preview())  # once per layer
        shapes = self.viewer.layers[name]
        self.viewer.layers.selection.active = shapes
        shapes.mode = "add_rectangle"

    def region_box(self) -> tuple[int, int, int, int] | None:
        """``(row0, row1, col0, col1)`` of the last rectangle of ``<image> region``.

        In pixels of the labels layer; ``None`` when there is none (the whole image).
        """
        layer = self.labels_layer()
        if layer is None:
            return None
        image = layer.metadata.get(META, {}).get("image")
        name = result_layer_names(image)["region"] if image else None
        if name not in self.viewer.layers or not len(self.viewer.layers[name].data):
            return None
        shapes = self.viewer.layers[name]
        world = [shapes.data_to_world(v) for v in np.asarray(shapes.data[-1])]
        pix = np.array([np.asarray(layer.world_to_data(w))[-2:] for w in world])
        r0, c0 = np.floor(pix.min(0)).astype(int)
        r1, c1 = np.ceil(pix.max(0)).astype(int)
        h, w = np.asarray(layer.data).shape[-2:]
        return max(r0, 0), min(r1, h), max(c0, 0), min(c1, w)

    def select_class(self, i: int) -> None:
        """Paint with the ``i``-th class (1-based) of the project's class list."""
        try:
            store, _image, layer = self.context()
        except HitlError as exc:
            self._error(exc)
            return
        if 1 <= i <= len(store.classes):
            cls = store.classes[i - 1]
            layer.selected_label = cls.value
            self.viewer.layers.selection.active = layer
            layer.mode = "paint"
            self.status.setText(f"Painting {cls.name} (label {cls.value}).")

    def closeEvent(self, event: Any) -> None:
        """Closing the widget cancels a running job and waits for it; shortcuts are released."""
        self._unbind_shortcuts()
        self.jobs.cancel()
        self.jobs.wait(10000)
        super().closeEvent(event)
