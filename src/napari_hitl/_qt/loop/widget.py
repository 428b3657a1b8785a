"""The Learning-loop dock widget: Train → Infer & filter → threshold → Add predictions → Undo.

Thin: every action calls :mod:`napari_hitl.core.loop` / :mod:`napari_hitl.core.loop.accept` on the
project store behind the chosen labels layer; training and inference run in worker threads
(:class:`~napari_hitl._qt.jobs.JobRunner`) so napari never freezes.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QEvent, QObject, Qt, QTimer
from qtpy.QtWidgets import QListWidgetItem

from napari_hitl._napari.adopt import adopt_layer, image_name_for, project_path_for
from napari_hitl._napari.layers import (
    META,
    load_stored_labels,
    save_layer_labels,
    store_image_layers,
)
from napari_hitl._napari.names import labels_name, result_layer_names
from napari_hitl._napari.preview import PredictionPreview
from napari_hitl._napari.region import draw_region, region_box
from napari_hitl._napari.result_layers import Box, show_prediction, write_part
from napari_hitl._napari.shortcuts import LOOP_SHORTCUTS, bind_shortcuts, shortcut_tooltip
from napari_hitl._napari.view import plane_index
from napari_hitl._qt.loop.background import BackgroundPrediction
from napari_hitl._qt.loop.live import LiveController
from napari_hitl._qt.loop.panel import LoopPanel
from napari_hitl._qt.loop.points import PointsTool
from napari_hitl._qt.loop.texts import areas_text, history_text
from napari_hitl.core import choices
from napari_hitl.core.errors import HitlError
from napari_hitl.core.learning.data import TrainingDataError
from napari_hitl.core.learning.net import TrainConfig
from napari_hitl.core.learning.prediction import Prediction
from napari_hitl.core.loop import (
    predict_project_image,
    push_project_image,
    require_state,
    stack_depth,
    train_project,
)
from napari_hitl.core.loop.accept import store_clear_machine, store_undo
from napari_hitl.core.store import ProjectStore

if TYPE_CHECKING:
    import napari


__all__ = ["LoopWidget", "history_text", "result_layer_names"]
AUTOSAVE_MS = 1000  # save painted labels this long after the last stroke


class LoopWidget(LoopPanel):
    """Drive the learning loop on the image behind a napari-hitl labels layer."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.preview = PredictionPreview()

        self.live = LiveController(self)
        self.points = PointsTool(self)
        self.background = BackgroundPrediction(self)
        self.after_live = False
        # brush strokes are written into the project store a moment after the last one, so that
        # closing napari never loses painting (see save_labels_now)
        self._autosave = QTimer(self)
        self._autosave.setSingleShot(True)
        self._autosave.setInterval(AUTOSAVE_MS)
        self._autosave.timeout.connect(self.save_labels_now)
        self._watched: Any = None
        self.lay_out(self.background.row(), self.points.row())

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
        self.model_combo.currentTextChanged.connect(self._model_changed)
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
        self._unbind = bind_shortcuts(self.viewer, actions)
        self.shortcuts_label.setToolTip(shortcut_tooltip(LOOP_SHORTCUTS))

    # ---------------------------------------------------------------- context
    @property
    def threshold(self) -> float:
        """The confidence threshold of the slider (0.50–1.00)."""
        return self.threshold_slider.value() / 100

    @property
    def prediction(self) -> Prediction | None:
        """The prediction of the plane on show that the preview reads (``None`` before Infer)."""
        return self.preview.prediction

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
        model = self.model_combo.currentText()
        unet = choices.may_train_unet(model)
        gate = choices.NOVELTY_GATE_FACTOR if self.novelty_check.isChecked() and unet else 0.0
        bank = list(choices.FILTER_BANK_SIGMAS) if self.bank_check.isChecked() and unet else None
        budget = self.budget_spin.value() or None  # 0: the model's step counts
        return TrainConfig(
            model=model,
            bands=self.model_bands(),
            novelty_gate=gate,
            time_budget=budget,
            filter_bank=bank,
            row_position=self.row_check.isChecked(),
            band_jitter=self.jitter_check.isChecked(),
            lovasz_weight=choices.LOVASZ_WEIGHT if self.lovasz_check.isChecked() and unet else 0.0,
        )

    def _model_changed(self, model: str) -> None:
        for box in self.unet_boxes:
            box.setEnabled(choices.may_train_unet(model))

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
        config, fresh = config or self.train_config(), self.fresh_check.isChecked()

        def done(result: Any) -> None:
            report, state = result
            self.fresh_check.setChecked(False)  # one new network, then warm starts again
            chosen = f"{report.model_choice['summary']}. " if report.model_choice else ""
            self.status.setText(
                f"{chosen}Trained {state.classifier.kind}, iteration {state.iteration} "
                f"({'warm start' if report.warm_start else 'fresh'}, {report.seconds:.1f} s, "
                f"temperature {report.temperature:.2f}). Now Infer & filter."
            )
            self.refresh_areas()
            self._update_history(store)

        return self.jobs.start(
            "Training", lambda token: train_project(store, config, fresh=fresh, cancel=token), done
        )

    def infer(self) -> bool:
        """Predict the current image (inside the region rectangle if one is drawn; the slice on
        show or the whole stack for a Z/T stack) in a worker thread; results appear as layers."""
        try:
            store, image, layer = self.context()
            state = require_state(store, "paint a few pixels of each class and Train")
        except HitlError as exc:
            self.show_error(exc)
            return False
        index = self.plane_index()
        whole_stack = index is not None and self.stack_combo.currentIndex() == 1
        region = self.region_box()

        def done(pred: Prediction) -> None:
            if whole_stack:
                self.preview.keep_stack(image, pred)
                self._show_results(store, image, layer, pred, None)
                self._slice_changed()
            else:
                self.preview.keep(image, pred, index)
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

    def show_prediction(
        self, store: ProjectStore, image: str, layer: Any, pred: Prediction, index: int | None,
        box: Box | None = None,
    ) -> None:  # fmt: skip
        """Show a prediction made outside Infer & filter — read from the store after a
        background run, or of one ``box`` (a live round, pasted into the plane's) — and keep it
        for the threshold preview."""
        if box is None:
            self.preview.keep(image, pred, index)
        else:
            self.preview.paste(image, pred, box, index, np.shape(layer.data)[-2:])
        self._show_results(store, image, layer, pred, index, box)

    def _restyle_uncertainty(self) -> None:
        pv = self.preview
        if pv.prediction is None or pv.image is None:
            return
        from napari_hitl._napari.result_layers import uncertainty

        name = result_layer_names(pv.image)["uncertainty"]
        if name in self.viewer.layers:
            unc = uncertainty(pv.prediction, self.uncertainty_combo.currentText())
            write_part(self.viewer.layers[name], unc, pv.index, None)

    def _slice_changed(self, *_: Any) -> None:
        """A new slice of a stack is on show: its part of a whole-stack prediction drives the
        preview."""
        if self.preview.show_slice(self.plane_index()):
            self.refresh_preview()

    def _threshold_changed(self, value: int) -> None:
        self.threshold_label.setText(f"{value / 100:.2f}")
        self.refresh_preview()

    def accepted_mask(self) -> np.ndarray | None:
        """Pixels that Add predictions would add now (from the cached prediction, no inference)."""
        layer = self.labels_layer()
        if layer is None:
            return None
        return self.preview.accepted(
            layer.data, self.threshold, self.region_box(), self.margin_spin.value()
        )

    def refresh_preview(self) -> None:
        """Redraw the threshold preview of the current prediction."""
        accepted, pv = self.accepted_mask(), self.preview
        if accepted is None or pv.image is None or pv.prediction is None:
            return
        name = result_layer_names(pv.image)["accepted"]
        if name in self.viewer.layers:
            part = np.where(accepted, pv.prediction.labels, 0).astype(np.uint16)
            write_part(self.viewer.layers[name], part, pv.index, None)
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
        predicted = self.prediction.labels if self.prediction is not None else None
        self.areas.setText(areas_text(store.classes, np.asarray(layer.data), predicted))

    def _update_history(self, store: ProjectStore) -> None:
        """Show the project's Train history (one line per Train, the latest last), and the
        stored model's input options, so that Train continues that model."""
        self.history_label.setText(history_text(store.history()))
        if "latest" in store.model_names():
            with contextlib.suppress(KeyError, ValueError, TypeError):  # unreadable: Train says so
                self.show_model_inputs(store.model_config("latest"))

    # ---------------------------------------------------------------- region, classes
    def draw_region(self) -> None:
        """Add (or select) the ``<image> region`` Shapes layer in rectangle mode."""
        try:
            _store, image, layer = self.context()
        except HitlError as exc:
            self.show_error(exc)
            return
        draw_region(self.viewer, image, layer, self.refresh_preview)

    def region_box(self) -> tuple[int, int, int, int] | None:
        """``(row0, row1, col0, col1)`` of the last rectangle of ``<image> region``.

        In pixels of the labels layer; ``None`` when there is none (the whole image).
        """
        return region_box(self.viewer, self.labels_layer())

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
    def release(self) -> None:
        """Save pending strokes before the widget's job is cancelled (see ``shutdown``)."""
        if self._autosave.isActive():
            self.save_labels_now()

    def shutdown(self) -> None:
        """As every dock widget (strokes saved first, see :meth:`release`), then stop the
        background prediction too."""
        super().shutdown()
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
