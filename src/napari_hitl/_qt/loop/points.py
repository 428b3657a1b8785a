"""Positive / negative points for the loop widget: a Points layer whose clicks become labels.

*Points…* adds ``"<image> points"`` in add mode. Each click records the class being painted
(the labels layer's selected label) and whether *negative* is ticked (positive points are green,
negative ones red). *Apply points* turns them into labels with
:func:`napari_hitl.core.loop.interactions.apply_points`, saves them as human labels and clears the
points.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QObject
from qtpy.QtWidgets import QCheckBox, QHBoxLayout

from napari_hitl._napari.layers import load_stored_labels, save_layer_labels
from napari_hitl._napari.names import result_layer_names
from napari_hitl._qt.controls import button
from napari_hitl.core.errors import HitlError
from napari_hitl.core.loop.interactions import PointsResult, apply_points

if TYPE_CHECKING:
    from napari_hitl._qt.loop.host import LoopHost

POINT_RADIUS = 2  # pixels labeled around a click
COLORS = {True: "lime", False: "red"}


class PointsTool(QObject):
    """The *Points…* / *negative* / *Apply points* row of the loop widget."""

    def __init__(self, widget: LoopHost) -> None:
        super().__init__(widget)
        self.widget = widget
        self.add_button = button(
            "Points…",
            "Click points of the class you paint with: positive = this is the class, negative "
            "= it is not (two classes: the other class; more: removes that wrong machine region)",
        )
        self.negative_check = QCheckBox("negative")
        self.apply_button = button(
            "Apply points", "Turn the points into labels (human labels stay as they are)"
        )
        self.add_button.clicked.connect(self.add_layer)
        self.negative_check.toggled.connect(lambda _on: self._set_defaults())
        self.apply_button.clicked.connect(self.apply)

    def row(self) -> QHBoxLayout:
        """The controls, laid out in a row."""
        row = QHBoxLayout()
        for w in (self.add_button, self.negative_check, self.apply_button):
            row.addWidget(w)
        return row

    def layer(self) -> Any:
        """The points layer of the current image, or ``None``."""
        lab = self.widget.labels_layer()
        if lab is None:
            return None
        image = lab.metadata.get("napari_hitl", {}).get("image")
        name = result_layer_names(image)["points"] if image else None
        layers = self.widget.viewer.layers  # a LayerList: no .get()
        return layers[name] if name in layers else None  # noqa: SIM401

    def add_layer(self) -> Any:
        """Add (or select) the points layer in add mode; returns it."""
        w = self.widget
        try:
            _store, image, lab = w.context()
        except HitlError as exc:
            w.show_error(exc)
            return None
        layer = self.layer()
        if layer is None:
            layer = w.viewer.add_points(
                ndim=np.ndim(lab.data),
                name=result_layer_names(image)["points"],
                scale=lab.scale,
                translate=lab.translate,
                size=6,
                features={"positive": np.zeros(0, bool), "label": np.zeros(0, int)},
                face_color=COLORS[True],
                border_color="white",
            )
            lab.events.selected_label.connect(lambda _e: self._set_defaults())
        self._set_defaults()
        w.viewer.layers.selection.active = layer
        layer.mode = "add"
        return layer

    def _set_defaults(self) -> None:
        layer, lab = self.layer(), self.widget.labels_layer()
        if layer is None or lab is None:
            return
        positive = not self.negative_check.isChecked()
        layer.selected_data = set()  # the new colour is for the next points, not the last one
        layer.feature_defaults = {"positive": positive, "label": int(lab.selected_label)}
        layer.current_face_color = COLORS[positive]

    def apply(self) -> PointsResult | None:
        """Turn the points (of the slice on show) into labels; returns what changed."""
        w = self.widget
        layer = self.layer()
        if layer is None or not len(layer.data):
            w.status.setText("No points: press Points… and click on the image.")
            return None
        try:
            store, image, lab = w.context()
            index = w.plane_index()
            pix = np.array([lab.world_to_data(layer.data_to_world(p)) for p in layer.data])
            keep = np.ones(len(pix), bool)
            if index is not None:
                keep = np.rint(pix[:, -3]) == index
            features = layer.features
            save_layer_labels(store, lab)  # the strokes first (the layer now shows the store)
            labels = np.asarray(lab.data)
            plane = labels[index] if index is not None else labels
            prov = store.provenance(image)
            result = apply_points(
                plane,
                prov[index] if index is not None else prov,
                pix[keep][:, -2:],
                np.asarray(features["label"])[keep],
                np.asarray(features["positive"])[keep],
                [c.value for c in store.classes],
                POINT_RADIUS,
            )
            if index is not None:
                labels = labels.copy()
                labels[index] = result.labels
            else:
                labels = result.labels
            store.save_strokes(image, labels, base=np.asarray(lab.data))
        except (HitlError, ValueError) as exc:
            w.show_error(exc)
            return None
        load_stored_labels(lab, store, image)
        layer.data = np.zeros((0, layer.ndim))
        w.refresh_preview()
        w.refresh_areas()
        w.status.setText(
            f"Points: {result.labeled} pixels labeled, {result.removed} machine pixels removed"
            + (f", {result.skipped} points changed nothing" if result.skipped else "")
            + "."
        )
        return result
