"""The Learning-loop dock widget: Train → Infer & filter → threshold → Add predictions → Undo.

Thin: every action calls :mod:`napari_hitl.core.loop` / :mod:`napari_hitl.core.feedback` on the
project store behind the chosen labels layer; training and inference run in worker threads
(:class:`~napari_hitl._qt.jobs.JobRunner`) so napari never freezes.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QEvent, QObject, Qt, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
)

from napari_hitl._napari.adopt import adopt_layer, image_name_for, project_path_for
from napari_hitl._napari.layers import (
    META,
    load_stored_labels,
    save_layer_labels,
    store_image_layers,
)
from napari_hitl._napari.names import labels_name, result_layer_names
from napari_hitl._napari.view import plane_index
from napari_hitl._qt.background_predict import BackgroundPrediction
from napari_hitl._qt.dock import DockWidget
from napari_hitl._qt.jobs import JobRunner
from napari_hitl._qt.live_controller import LiveController
from napari_hitl._qt.points_tool import PointsTool
from napari_hitl._qt.result_layers import UNCERTAINTY_KINDS, Box, show_prediction, write_part
from napari_hitl._qt.shortcuts import LOOP_SHORTCUTS, bind_shortcuts, shortcut_tooltip
from napari_hitl.core.choices import (
    DEFAULT_MARGIN,
    DEFAULT_MODEL,
    DEFAULT_THRESHOLD,
    MODEL_HELP,
    MODEL_NAMES,
)
from napari_hitl.core.classifier import TrainConfig
from napari_hitl.core.data import TrainingDataError
from napari_hitl.core.errors import HitlError
from napari_hitl.core.feedback import accept_mask, store_clear_machine, store_undo
from napari_hitl.core.loop import (
    load_state,
    predict_project_image,
    push_project_image,
    stack_depth,
    train_project,
)
from napari_hitl.core.prediction import Prediction
from napari_hitl.core.store import ProjectStore

if TYPE_CHECKING:
    import napari


__all__ = ["LoopWidget", "history_text", "result_layer_names"]
AUTOSAVE_MS = 1000  # save painted labels this long after the last stroke
HISTORY_LINES = 6  # Trains shown in the widget (the CLI's `history` has them all)


def history_text(records: list[dict[str, Any]], last: int = HISTORY_LINES) -> str:
    """The widget's history: a title and one line per Train (the ``last`` ones), as rich text."""
    if not records:
        return ""
    lines = []
    for r in records[-last:]:
        acc = r.get("holdout_accuracy")
        held = f"held-out {acc:.1%}" if acc is not None else "held-out —"
        lines.append(
            f"#{r.get('train', '?')} it {r.get('iteration', '?')}: "
            f"{r.get('human_pixels', 0)} px / {r.get('human_strokes', 0)} strokes · "
            f"labeled {r.get('labeled_fraction', 0.0):.1%} "
            f"(machine {r.get('machine_fraction', 0.0):.1%}) · {held}"
        )
    earlier = len(records) - len(lines)
    title = "<b>History</b>" + (f" ({earlier} earlier Trains not shown)" if earlier else "")
    return title + "<br>" + "<br>".join(lines)


class LoopWidget(DockWidget):
    """Drive the learning loop on the image behind a napari-hitl labels layer."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.prediction: Prediction | None = None
        self._predicted_image: str | None = None

        self.labels_combo = QComboBox()
        self.image_combo = QComboBox()
        self.image_combo.setToolTip(
            "An image layer that is not in a project yet (e.g. a TIFF opened by another reader)"
        )
        self.adopt_button = QPushButton("Label this image")
        self.adopt_button.setToolTip(
            "Put the image into a project store (next to its file as NAME.hitl.zarr, or in "
            "~/napari-hitl/) and add a labels layer to paint in; reopening it resumes"
        )
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
        self.uncertainty_combo = QComboBox()
        self.uncertainty_combo.addItems(UNCERTAINTY_KINDS)
        self.uncertainty_combo.setToolTip(
            "Uncertainty layer: entropy of the class probabilities, or 1 − margin between the "
            "two most likely classes (high where two classes compete)"
        )
        self.bands_list = QListWidget()
        self.bands_list.setMaximumHeight(90)
        self.bands_list.setToolTip("Bands the model trains on (untick noisy bands)")
        self.stack_combo = QComboBox()
        self.stack_combo.addItems(["current slice", "whole stack"])
        self.stack_combo.setToolTip("A Z/T stack: predict the slice on show or every slice")
        self.live_check = QCheckBox("Live")
        self.live_check.setToolTip(
            "Train in the background while you paint; the visible part of the image is "
            "predicted again after each stroke. Switching it off saves the model and predicts "
            "the whole image."
        )
        self.update_button = QPushButton("Update")
        self.update_button.setToolTip("One live round: train briefly on the labels and predict "
                                      "the visible part of the image")  # fmt: skip
        self.add_button = QPushButton("Add predictions")
        self.undo_button = QPushButton("Undo push")
        self.clear_button = QPushButton("Clear machine labels")
        self.region_button = QPushButton("Region…")
        self.shortcuts_label = QLabel("<i>Shortcuts: Alt-T/I/A/U/L, Alt-1…9 (hover)</i>")
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setVisible(False)
        self.status = QLabel("Paint a few pixels of each class, then Train.")
        self.status.setTextFormat(Qt.TextFormat.PlainText)  # class names show as typed
        self.status.setWordWrap(True)
        self.areas = QLabel()
        self.areas.setWordWrap(True)
        self.history_label = QLabel()
        self.history_label.setWordWrap(True)
        self.history_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.history_label.setToolTip(
            "One line per Train (latest last): human pixels and strokes so far, labeled and "
            "machine-labeled share of all pixels, accuracy on the held-out human strokes. "
            "`napari-hitl history STORE --plot FILE` prints and plots all of it."
        )
        self.jobs = JobRunner(self.progress)
        self.live = LiveController(self)
        self.points = PointsTool(self)
        self.background = BackgroundPrediction(self)
        self.after_live = False
        self._stack_prediction: Prediction | None = None
        self._pred_index: int | None = None
        # brush strokes are written into the project store a moment after the last one, so that
        # closing napari never loses painting (see save_labels_now)
        self._autosave = QTimer(self)
        self._autosave.setSingleShot(True)
        self._autosave.setInterval(AUTOSAVE_MS)
        self._autosave.timeout.connect(self.save_labels_now)
        self._watched: Any = None

        form = QFormLayout()
        adopt_row = QHBoxLayout()
        adopt_row.addWidget(self.image_combo, 1)
        adopt_row.addWidget(self.adopt_button)
        form.addRow("New image", adopt_row)
        form.addRow("Labels layer", self.labels_combo)
        form.addRow("Model", self.model_combo)
        form.addRow("Model bands", self.bands_list)
        form.addRow("Predict", self.stack_combo)
        form.addRow("Uncertainty", self.uncertainty_combo)
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
        layout.addLayout(self.background.row())
        live_row = QHBoxLayout()
        live_row.addWidget(self.live_check)
        live_row.addWidget(self.update_button)
        layout.addLayout(live_row)
        layout.addWidget(QLabel("Confidence threshold"))
        layout.addLayout(thr)
        margin_form = QFormLayout()
        margin_form.addRow("Boundary margin", self.margin_spin)
        layout.addLayout(margin_form)
        layout.addLayout(push_row)
        layout.addWidget(self.clear_button)
        layout.addLayout(self.points.row())
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.areas)
        layout.addWidget(self.history_label)
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
        self.margin_spin.valueChanged.connect(lambda _v: self.refresh_preview())
        self.add_button.clicked.connect(self.add_predictions)
        self.undo_button.clicked.connect(self.undo)
        self.clear_button.clicked.connect(self.clear_machine)
        self.jobs.started.connect(lambda _n: self._set_busy(True))
        self.jobs.finished.connect(lambda _n: self._set_busy(False))
        self.jobs.cancelled.connect(lambda n: self.status.setText(f"{n} cancelled."))
        self.jobs.failed.connect(lambda n, msg: self.status.setText(f"{n} failed: {msg}"))
        self.region_button.clicked.connect(self.draw_region)
        self.adopt_button.clicked.connect(self.start_labeling)
        self.live_check.toggled.connect(self._live_toggled)
        self.update_button.clicked.connect(lambda: self.live.start(once=True))
        self.live.state_changed.connect(self._live_state)
        self.uncertainty_combo.currentTextChanged.connect(lambda _t: self._restyle_uncertainty())
        self.labels_combo.currentTextChanged.connect(lambda _t: self._image_changed())
        self.viewer.dims.events.current_step.connect(self._slice_changed)
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self._refresh_layers()
        self._image_changed()
        self._threshold_changed(self.threshold_slider.value())
        actions = {
            "Alt-T": self._train_or_cancel,
            "Alt-I": self.infer,
            "Alt-A": self.add_predictions,
            "Alt-U": self.undo,
            "Alt-L": lambda: self.live_check.setChecked(not self.live_check.isChecked()),
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
        from napari.layers import Image

        outside = [
            ly.name for ly in self.viewer.layers
            if isinstance(ly, Image)
            and not ly.metadata.get(META, {}).get("store")
            and ly.metadata.get(META, {}).get("role") != "result"
        ]  # fmt: skip
        self.image_combo.clear()
        self.image_combo.addItems(outside)
        self.adopt_button.setEnabled(bool(outside))
        if self.labels_combo.currentText() != current:
            self._image_changed()

    def start_labeling(self, layer_name: str | None = None) -> bool:
        """Put an image layer that is in no project into one (in a worker thread), then show
        its layers with a labels layer to paint in; returns whether the job started."""
        from napari.layers import Image

        name = layer_name or self.image_combo.currentText()
        layer = self.viewer.layers[name] if name in self.viewer.layers else None  # noqa: SIM401
        if not isinstance(layer, Image):
            self.show_error(HitlError("choose an image layer first"))
            return False
        source = getattr(layer.source, "path", None)
        path, image = project_path_for(name, source), image_name_for(name)
        bands = layer.metadata.get(META, {}).get("band_names")
        data, rgb = layer.data, bool(layer.rgb)

        def done(store: ProjectStore) -> None:
            for arr, kwargs, kind in store_image_layers(store, image):
                if kwargs["name"] not in self.viewer.layers:
                    getattr(self.viewer, f"add_{kind}")(arr, **kwargs)
            layer.visible = False
            self._refresh_layers()
            self.labels_combo.setCurrentText(labels_name(image))
            self._image_changed()
            self.viewer.layers.selection.active = self.viewer.layers[labels_name(image)]
            self.status.setText(
                f"Project {path}: paint a few pixels of each class into '{labels_name(image)}' "
                "(rename the classes in the Project widget), then Train."
            )

        return self.jobs.start(
            "Import", lambda token: adopt_layer(path, image, data, rgb, bands, token), done
        )

    def _image_changed(self) -> None:
        """A new labels layer was chosen: its bands fill the band list; stack options show;
        its strokes are saved automatically."""
        self.bands_list.clear()
        self._watch(self.labels_layer())
        try:
            store, image, _layer = self.context()
        except HitlError:
            self.stack_combo.setEnabled(False)
            self.history_label.clear()
            return
        self._update_history(store)
        info = store.image_info(image)
        for band in info.band_names:
            item = QListWidgetItem(band)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked)
            self.bands_list.addItem(item)
        self.stack_combo.setEnabled(bool(stack_depth(info)))
        self.refresh_areas()

    def _watch(self, layer: Any) -> None:
        if self._watched is layer:
            return
        if self._watched is not None:
            self.save_labels_now()
            self._watched.events.paint.disconnect(self._stroke)
        self._watched = layer
        if layer is not None:
            layer.events.paint.connect(self._stroke)

    def _stroke(self, _event: Any = None) -> None:
        if not self.live.active:  # live mode saves every stroke itself
            self._autosave.start()

    def save_labels_now(self) -> int:
        """Write the watched labels layer into the project store now; returns changed pixels."""
        self._autosave.stop()
        layer = self._watched
        meta = layer.metadata.get(META, {}) if layer is not None else {}
        if not meta.get("store"):
            return 0
        try:
            store = ProjectStore.open(meta["store"], "a")
            changed = save_layer_labels(store, layer)
        except (HitlError, ValueError) as exc:
            self.show_error(exc)
            return 0
        self.refresh_areas()
        return changed

    def plane_index(self) -> int | None:
        """The slice of a Z/T stack on show (``None`` for a 2-D image)."""
        return plane_index(self.viewer, self.labels_layer())

    def model_bands(self) -> list[str] | None:
        """The ticked bands (``None`` when all are ticked: every band)."""
        items = [self.bands_list.item(i) for i in range(self.bands_list.count())]
        chosen = [it.text() for it in items if it.checkState() == Qt.CheckState.Checked]
        return None if len(chosen) == len(items) else chosen

    def train_config(self) -> TrainConfig:
        """The training settings chosen in the widget."""
        return TrainConfig(model=self.model_combo.currentText(), bands=self.model_bands())

    def _set_busy(self, busy: bool) -> None:
        name = self.jobs.name
        self.train_button.setText("Cancel" if busy and name == "Training" else "Train")
        for b in (
            self.infer_button,
            self.add_button,
            self.undo_button,
            self.clear_button,
            self.update_button,
            self.points.apply_button,
            self.region_button,
            self.adopt_button,
        ):
            b.setEnabled(not busy)
        self.train_button.setEnabled(not busy or name == "Training")
        self.live_check.setEnabled(not busy or name == "Live")
        if not busy and self.after_live:
            self.after_live = False
            self.infer()

    def save_human_edits(self, store: ProjectStore, image: str, layer: Any) -> None:
        """Save the person's strokes in ``layer`` on top of what the store holds now."""
        save_layer_labels(store, layer)

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
            self.save_human_edits(store, image, layer)
            if not any(store.labels(n).any() for n in store.image_names()):
                raise TrainingDataError(
                    "there are no labels yet: paint a few pixels of each class first"
                )
        except (HitlError, ValueError) as exc:
            self.show_error(exc)
            return False
        config = config or self.train_config()

        def done(result: Any) -> None:
            report, state = result
            self.status.setText(
                f"Trained {state.classifier.kind}, iteration {state.iteration} "
                f"({'warm start' if report.warm_start else 'fresh'}, {report.seconds:.1f} s, "
                f"temperature {report.temperature:.2f}). Now Infer & filter."
            )
            self.refresh_areas()
            self._update_history(store)

        return self.jobs.start(
            "Training", lambda token: train_project(store, config, cancel=token), done
        )

    def infer(self) -> bool:
        """Predict the current image (inside the region rectangle if one is drawn; the slice on
        show or the whole stack for a Z/T stack) in a worker thread; results appear as layers."""
        try:
            store, image, layer = self.context()
            state = load_state(store)
            if state is None:
                raise HitlError("no model yet: paint a few pixels of each class and Train")
        except HitlError as exc:
            self.show_error(exc)
            return False
        index = self.plane_index()
        whole_stack = index is not None and self.stack_combo.currentIndex() == 1
        region = self.region_box()

        def done(pred: Prediction) -> None:
            self._predicted_image = image
            if whole_stack:
                self._stack_prediction = pred
                self._show_results(store, image, layer, pred, None)
                self._slice_changed()
            else:
                self._stack_prediction = None
                self.prediction, self._pred_index = pred, index
                self._show_results(store, image, layer, pred, index)
            where = " inside the region" if region else ""
            self.status.setText(
                f"Predicted {image}{where} with iteration {state.iteration}. Move the threshold, "
                "then Add predictions."
            )

        return self.jobs.start(
            "Inference",
            lambda token: predict_project_image(
                store,
                image,
                state,
                cancel=token,
                index=None if whole_stack else index,
                region=region,
            ),
            done,
        )

    def _edit_labels(self, action: Any, message: Any) -> int:
        """Save the person's edits, apply ``action(store, image)`` to the stored labels, reload the
        layer and report; returns the pixel count ``action`` reports (0 on an error)."""
        try:
            store, image, layer = self.context()
            self.save_human_edits(store, image, layer)
            result = action(store, image)
        except (HitlError, ValueError) as exc:
            self.show_error(exc)
            return 0
        self._reload_labels(store, image, layer)
        self.status.setText(message(result))
        return int(getattr(result, "count", result))

    def add_predictions(self) -> int:
        """Push accepted pixels into the labels (human labels untouched); returns pixels added."""
        index = self.plane_index()
        return self._edit_labels(
            lambda store, image: push_project_image(
                store,
                image,
                self.threshold,
                self.region_box(),
                margin=self.margin_spin.value(),
                index=index,
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
        load_stored_labels(layer, store, image)
        self.refresh_preview()
        self.refresh_areas()

    def show_stored_prediction(
        self, store: ProjectStore, image: str, layer: Any, pred: Prediction, index: int | None
    ) -> None:
        """Show a prediction read from the store (a background run) and keep it for the
        threshold preview, as Infer & filter does."""
        self._predicted_image, self._stack_prediction = image, None
        self.prediction, self._pred_index = pred, index
        self._show_results(store, image, layer, pred, index)

    def _show_results(
        self,
        store: ProjectStore,
        image: str,
        layer: Any,
        pred: Prediction,
        index: int | None,
        box: Box | None = None,
    ) -> None:
        kind = self.uncertainty_combo.currentText()
        show_prediction(self.viewer, image, layer, pred, store.classes, kind, index, box)
        self.viewer.layers.selection.active = layer
        self.refresh_preview()
        self.refresh_areas()

    def show_partial_prediction(
        self,
        store: ProjectStore,
        image: str,
        layer: Any,
        part: Prediction,
        index: int | None,
        box: Box,
    ) -> None:
        """Show the prediction of one box (a live round) and keep it for the preview."""
        h, w = np.shape(layer.data)[-2:]
        k = part.probabilities.shape[0]
        pred = self.prediction
        if (
            pred is None
            or self._predicted_image != image
            or self._pred_index != index
            or pred.probabilities.shape != (k, h, w)
        ):
            pred = Prediction.empty(k, (h, w))
        pred.paste(part, box)
        self.prediction, self._pred_index, self._predicted_image = pred, index, image
        self._stack_prediction = None
        self._show_results(store, image, layer, part, index, box)

    def _restyle_uncertainty(self) -> None:
        if self.prediction is None or self._predicted_image is None:
            return
        from napari_hitl._qt.result_layers import uncertainty

        name = result_layer_names(self._predicted_image)["uncertainty"]
        if name in self.viewer.layers:
            unc = uncertainty(self.prediction, self.uncertainty_combo.currentText())
            write_part(self.viewer.layers[name], unc, self._pred_index, None)

    def _slice_changed(self, *_: Any) -> None:
        """A new slice of a stack is on show: its part of a whole-stack prediction drives the
        preview."""
        stack = self._stack_prediction
        index = self.plane_index()
        if stack is None or index is None or stack.labels.ndim != 3:
            return
        self.prediction = Prediction(
            stack.labels[index],
            stack.probabilities[:, index],
            stack.confidence[index],
            stack.margin[index],
            stack.entropy[index],
        )
        self._pred_index = index
        self.refresh_preview()

    def _threshold_changed(self, value: int) -> None:
        self.threshold_label.setText(f"{value / 100:.2f}")
        self.refresh_preview()

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
        labels = np.asarray(layer.data)
        if self._pred_index is not None:
            labels = labels[self._pred_index]
        if labels.shape != accepted.shape:
            return None
        return accepted & (labels == 0)

    def refresh_preview(self) -> None:
        """Redraw the threshold preview of the current prediction."""
        accepted = self.accepted_mask()
        if accepted is None or self._predicted_image is None:
            return
        name = result_layer_names(self._predicted_image)["accepted"]
        if name in self.viewer.layers:
            part = np.where(accepted, self.prediction.labels, 0).astype(np.uint16)
            write_part(self.viewer.layers[name], part, self._pred_index, None)
        share = accepted.mean()
        self.status.setText(
            f"{accepted.sum()} pixels ({share:.1%}) would be added at confidence "
            f"≥ {self.threshold:.2f}."
        )

    def refresh_areas(self) -> None:
        """Recount the labeled areas shown under the buttons."""
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
            name = html.escape(c.name)  # rich text: a name is text, never markup
            line = f"<span style='color:{c.color}'>■</span> {name}: labels {lab:.1%}"
            if self.prediction is not None:
                line += f", prediction {float((self.prediction.labels == c.value).mean()):.1%}"
            lines.append(line)
        self.areas.setText("<br>".join(lines))

    def _update_history(self, store: ProjectStore) -> None:
        """Show the project's Train history: one compact line per Train, the latest last."""
        self.history_label.setText(history_text(store.history()))

    # ---------------------------------------------------------------- region, classes
    def draw_region(self) -> None:
        """Add (or select) the ``<image> region`` Shapes layer in rectangle mode."""
        try:
            _store, image, layer = self.context()
        except HitlError as exc:
            self.show_error(exc)
            return
        name = result_layer_names(image)["region"]
        if name not in self.viewer.layers:
            style = {"edge_color": "yellow", "face_color": "transparent", "edge_width": 2}
            added = self.viewer.add_shapes(
                name=name, scale=layer.scale, translate=layer.translate, **style
            )
            added.events.data.connect(lambda _e: self.refresh_preview())  # once per layer
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
            self.show_error(exc)
            return
        if 1 <= i <= len(store.classes):
            cls = store.classes[i - 1]
            layer.selected_label = cls.value
            self.viewer.layers.selection.active = layer
            layer.mode = "paint"
            self.status.setText(f"Painting {cls.name} (label {cls.value}).")

    # ---------------------------------------------------------------- live mode
    def _live_toggled(self, on: bool) -> None:
        if on and not self.live.active:
            if not self.live.start():
                self.live_check.blockSignals(True)
                self.live_check.setChecked(False)
                self.live_check.blockSignals(False)
            else:
                self.status.setText("Live: paint, and watch the prediction follow.")
        elif not on and self.live.active:
            self.status.setText("Live: saving the model…")
            self.live.stop()

    def _live_state(self, on: bool) -> None:
        self.live_check.blockSignals(True)
        self.live_check.setChecked(on and not self.live.once)
        self.live_check.blockSignals(False)

    # ---------------------------------------------------------------- closing
    def shutdown(self) -> None:
        """Save pending strokes, cancel a running job and wait for it (at most 10 s); release
        the shortcuts."""
        if self._autosave.isActive():
            self.save_labels_now()
        self._unbind_shortcuts()
        self._unbind_shortcuts = lambda: None
        self.jobs.cancel()
        self.jobs.wait(10000)
        self.background.stop()

    def showEvent(self, event: Any) -> None:
        """Watch the viewer's window: closing napari mid-job cancels the job cleanly."""
        window = self.window()
        if window is not self and not getattr(self, "_watching", False):
            window.installEventFilter(self)
            self._watching = True
        super().showEvent(event)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        """Cancel jobs when the viewer's window closes."""
        if event.type() == QEvent.Type.Close:
            self.shutdown()
        return False
