"""The *Explain and guide* dock widget: Grad-CAM and per-band attribution as layers, and attention
guidance by clicks with the confirm / next / fine-tune flow of the attention-guiding paper
(§3.4–3.6).

Thin over :mod:`napari_hitl.core.explain.project`; every computation runs in a worker thread.

Layers (updated in place by name, aligned with the image's labels layer):

- ``<image> Grad-CAM``: the map in [0, 1] (colormap *inferno*, added over the image);
- ``<image> Grad-CAM (before)`` and ``<image> prediction (before)``: the map and the
  prediction before the last fine-tuning (hidden; compare);
- ``<image> band attribution``: the map of the band chosen in the chart (green for the class,
  red against it, added over the image);
- ``<image> attention clicks``: positive (green) and negative (red) clicks;
- ``<image> ignore regions``: the superpixels under the negative clicks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from napari_hitl._napari.layers import META
from napari_hitl._napari.names import attention_layer_names
from napari_hitl._napari.result_layers import ensure_layer, show_prediction, write_part
from napari_hitl._napari.shortcuts import ATTENTION_SHORTCUTS
from napari_hitl._napari.view import (
    camera,
    plane_index,
    save_store_labels,
    show_store_image,
)
from napari_hitl._qt.dock import fill_class_combo
from napari_hitl._qt.explain.panel import REGIONS, ExplainPanel
from napari_hitl.core.active.review_queue import rank_project
from napari_hitl.core.errors import HitlError
from napari_hitl.core.explain.gradcam import Region, layer_names
from napari_hitl.core.explain.project import (
    ClickSet,
    Explanation,
    explain_project_image,
    guide_project,
    load_clicks,
    network_state,
    revert_guidance,
    save_clicks,
)
from napari_hitl.core.explain.steering import SteerConfig, negative_region
from napari_hitl.core.loop import predict_project_image
from napari_hitl.core.progress import Progress
from napari_hitl.core.store import ProjectStore

if TYPE_CHECKING:
    import napari

CLICK_COLORS = {True: "lime", False: "red"}


class AttentionWidget(ExplainPanel):
    """Explain the model (Grad-CAM, band attribution) and steer its attention with clicks."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.explanation: Explanation | None = None
        self.store_path: str | None = None
        self.clicks: dict[str, ClickSet] = {}  # by image key; the current round
        self.candidates: list[tuple[str, int | None]] = []  # (image, slice)
        self.click_mode = False
        self._saved_mode: tuple[Any, str] | None = None

        self.compute_button.clicked.connect(self.compute)
        self.cancel_button.clicked.connect(self.jobs.cancel)
        self.chart.band_clicked.connect(self.band_combo.setCurrentText)
        self.band_combo.currentTextChanged.connect(self.show_band)
        self.click_button.toggled.connect(self.set_click_mode)
        self.clear_button.clicked.connect(self.clear_clicks)
        self.confirm_button.clicked.connect(self.confirm)
        self.next_button.clicked.connect(self.next_candidate)
        self.finetune_button.clicked.connect(self.fine_tune)
        self.revert_button.clicked.connect(self.revert)
        self.rank_button.clicked.connect(self.rank_candidates)
        self.candidate_list.currentRowChanged.connect(self._candidate_chosen)
        self.viewer.mouse_drag_callbacks.append(self._on_mouse)
        self.connect_jobs(
            {
                "Alt-E": self.compute,
                "Alt-G": self.click_button.toggle,
                "Alt-K": self.confirm,
                "Alt-X": self.next_candidate,
            },
            ATTENTION_SHORTCUTS,
        )
        self.refresh_classes()

    # ---------------------------------------------------------------- context
    def refresh_classes(self) -> None:
        """Fill the class and layer choices from the open project and its model."""
        try:
            store, _image, _layer = self.context()
        except HitlError:
            return
        fill_class_combo(self.class_combo, store.classes)
        try:
            net = network_state(store).classifier.net  # type: ignore[union-attr]
        except (HitlError, ValueError):
            return
        chosen = self.layer_combo.currentText()
        self.layer_combo.clear()
        self.layer_combo.addItems(["default", *layer_names(net)])
        self.layer_combo.setCurrentText(chosen)

    def _key(self, image: str, index: int | None) -> str:
        return image if index is None else f"{image}[{index}]"

    def _set_busy(self, busy: bool) -> None:
        for b in (self.compute_button, self.finetune_button, self.revert_button, self.rank_button):
            b.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)

    # ---------------------------------------------------------------- explain
    def region(self, layer: Any) -> Region:
        """The region the combo asks for, in the labels layer's pixels."""
        choice = self.region_combo.currentText()
        h, w = np.shape(layer.data)[-2:]
        if choice == "whole image":
            return Region()
        if choice == "current view":
            cam = camera(self.viewer)
            size = np.asarray(self.viewer.canvas.size, float) / max(cam.zoom, 1e-9)
            centre = np.asarray(cam.center[-2:], float)
            lo = layer.world_to_data([*self.viewer.dims.point[:-2], *(centre - size / 2)])[-2:]
            hi = layer.world_to_data([*self.viewer.dims.point[:-2], *(centre + size / 2)])[-2:]
            r0, c0 = (max(int(np.floor(v)), 0) for v in np.minimum(lo, hi))
            r1, c1 = int(np.ceil(max(lo[0], hi[0]))), int(np.ceil(max(lo[1], hi[1])))
            return Region("box", box=(r0, min(r1, h), c0, min(c1, w)))
        pos = layer.world_to_data(self.viewer.cursor.position)
        return Region("segment", point=(round(pos[-2]), round(pos[-1])))

    def compute(self) -> bool:
        """Compute Grad-CAM (and band attribution) in a worker; returns whether it started."""
        try:
            store, image, layer = self.context()
            save_store_labels(self.viewer, store)
            region = self.region(layer)
        except (HitlError, ValueError) as exc:
            self.show_error(exc)
            return False
        index = plane_index(self.viewer, layer)
        self.refresh_classes()
        cls = self.class_combo.currentText()
        method = self.method_combo.currentText()
        lay = self.layer_combo.currentText()

        def job(token: Any) -> Any:
            return (
                yield from explain_project_image(
                    store, image, cls, region=region, index=index, cancel=token,
                    attribution=None if method == "none" else method,
                    layer=None if lay == "default" else lay,
                )
            )  # fmt: skip

        return self.jobs.start(
            "Explain", job, lambda exp: self.show_explanation(exp, layer, str(store.path))
        )

    def show_explanation(self, exp: Explanation, like: Any, store_path: str) -> None:
        """Show an explanation's layers and chart (on the GUI thread)."""
        self.explanation, self.store_path = exp, store_path
        names = attention_layer_names(exp.image)
        meta = {META: {"role": "result", "store": store_path, "image": exp.image}}
        # additive "inferno": 0 adds nothing, so the image shows through where the map is 0
        cam, new = ensure_layer(self.viewer, names["cam"], "image", like, np.float32,
                                colormap="inferno", contrast_limits=(0.0, 1.0), opacity=0.85,
                                blending="additive", metadata=meta)  # fmt: skip
        if new:
            cam.colorbar.visible = True
        write_part(cam, exp.cam.map, exp.index, None)
        cam.visible = True
        attr = exp.attribution
        self.band_combo.blockSignals(True)
        self.band_combo.clear()
        if attr is None:
            self.chart.clear()
        else:
            self.chart.plot(attr, exp.class_name)
            self.band_combo.addItems([b for b, _v, _s in attr.ranking()])
        self.band_combo.blockSignals(False)
        if attr is not None:
            self.show_band(self.band_combo.currentText())
        self.viewer.layers.selection.active = like
        self.status.setText(
            f"Grad-CAM of “{exp.class_name}” over {exp.region.describe()} "
            f"({int(exp.mask.sum())} px, layer {exp.cam.layer})"
            + (f"; strongest band: {attr.ranking()[0][0]}" if attr is not None else "")
            + ". Click mode: left = look here, right = ignore."
        )

    def show_band(self, band: str) -> None:
        """Show the attribution map of ``band`` of the current explanation."""
        exp = self.explanation
        if exp is None or exp.attribution is None or band not in exp.attribution.band_names:
            return
        like = self._like(exp.image)
        if like is None:
            return
        attr = exp.attribution
        data = attr.maps[attr.band_names.index(band)]
        names = attention_layer_names(exp.image)
        meta = {META: {"role": "result", "store": self.store_path, "image": exp.image}}
        layer, _ = ensure_layer(self.viewer, names["band"], "image", like, np.float32,
                                colormap=_diverging(), opacity=0.9, blending="additive",
                                visible=False, metadata=meta)  # fmt: skip
        write_part(layer, data, exp.index, None)
        hi = float(np.abs(attr.maps).max()) or 1.0
        layer.contrast_limits = (-hi, hi)  # one scale for every band: they compare
        layer.metadata[META]["band"] = band
        self.viewer.layers.selection.active = like

    def _like(self, image: str) -> Any:
        from napari_hitl._napari.names import labels_name

        name = labels_name(image)
        return self.viewer.layers[name] if name in self.viewer.layers else None  # noqa: SIM401

    # ----------------------------------------------------------------- clicks
    def set_click_mode(self, on: bool) -> None:
        """Clicks on the image become guidance clicks (the labels layer stops painting)."""
        self.click_mode = on
        if self.click_button.isChecked() != on:
            self.click_button.setChecked(on)
        try:
            _store, _image, layer = self.context()
        except HitlError:
            return
        if on:
            self._saved_mode = (layer, str(layer.mode))
            layer.mode = "pan_zoom"
        elif self._saved_mode is not None:
            saved_layer, mode = self._saved_mode
            saved_layer.mode = mode
            self._saved_mode = None

    def _on_mouse(self, _viewer: Any, event: Any) -> None:
        if not self.click_mode or event.type != "mouse_press":
            return
        try:
            _store, _image, layer = self.context()
        except HitlError:
            return
        pos = layer.world_to_data(event.position)
        self.add_click((round(pos[-2]), round(pos[-1])), positive=event.button == 1)

    def add_click(self, point: tuple[int, int], positive: bool) -> bool:
        """Record a guidance click on the explained image; returns whether it was taken.

        A negative click takes the superpixel of the Grad-CAM map under it.
        """
        exp = self.explanation
        if exp is None:
            self.status.setText("Compute the Grad-CAM of this image first, then click.")
            return False
        h, w = exp.cam.map.shape
        if not (0 <= point[0] < h and 0 <= point[1] < w):
            return False
        key = self._key(exp.image, exp.index)
        region = _region_text(exp.region)
        s = self.clicks.get(key)
        if s is None or s.region != region or s.class_ref != exp.class_name:
            s = ClickSet(exp.image, exp.class_name, exp.index, region)
            self.clicks[key] = s
        (s.positive if positive else s.negative).append(point)
        s.confirmed = False
        self._draw_clicks(exp.image)
        n = f"{len(s.positive)} positive, {len(s.negative)} negative"
        self.status.setText(f"{key}: {n} click(s). Confirm, then Next or Fine-tune.")
        return True

    def _draw_clicks(self, image: str) -> None:
        exp = self.explanation
        like = self._like(image)
        if exp is None or like is None:
            return
        s = self.clicks.get(self._key(exp.image, exp.index))
        names = attention_layer_names(image)
        lead = [] if exp.index is None else [exp.index]
        pts = [[*lead, *p] for p in (s.positive if s else [])]
        pts += [[*lead, *p] for p in (s.negative if s else [])]
        colors = [CLICK_COLORS[True]] * len(s.positive if s else []) + [CLICK_COLORS[False]] * len(
            s.negative if s else []
        )
        ndim = np.ndim(like.data)
        data = np.asarray(pts, float).reshape(-1, ndim)
        if names["clicks"] in self.viewer.layers:
            layer = self.viewer.layers[names["clicks"]]
            layer.data = data
        else:
            layer = self.viewer.add_points(
                data, name=names["clicks"], scale=like.scale, translate=like.translate, size=5,
                border_color="white", metadata={META: {"role": "result", "image": image,
                                                       "store": self.store_path}},
            )  # fmt: skip
        if len(data):
            layer.face_color = colors
        ignore = np.zeros(exp.cam.map.shape, np.uint8)
        for p in s.negative if s else []:
            ignore[negative_region(exp.cam.map, p, self.superpixel_combo.currentText())] = 1
        meta = {META: {"role": "result", "store": self.store_path, "image": image}}
        ig, _ = ensure_layer(self.viewer, names["ignore"], "labels", like, np.uint8,
                             opacity=0.35, metadata=meta)  # fmt: skip
        write_part(ig, ignore, exp.index, None)
        self.viewer.layers.selection.active = like

    def clear_clicks(self) -> None:
        """Forget the clicks of the explained image."""
        exp = self.explanation
        if exp is not None:
            self.clicks.pop(self._key(exp.image, exp.index), None)
            self._draw_clicks(exp.image)

    def confirm(self) -> bool:
        """Keep the current image's clicks (stored in the project) for the next fine-tuning."""
        exp = self.explanation
        s = self.clicks.get(self._key(exp.image, exp.index)) if exp is not None else None
        if s is None or not (s.positive or s.negative) or self.store_path is None:
            self.status.setText("Nothing to confirm: click on the image first (Click mode).")
            return False
        s.confirmed = True
        store = ProjectStore.open(self.store_path, "a")
        kept = {c.key: c for c in load_clicks(store) if c.confirmed}
        kept[s.key] = s
        save_clicks(store, list(kept.values()))
        self._mark_candidates()
        self.status.setText(f"{s.key} confirmed ({len(kept)} image(s) ready). Next, or Fine-tune.")
        return True

    # ------------------------------------------------------------- candidates
    def rank_candidates(self) -> bool:
        """Order the project's images (slices) by an active-learning strategy (in a worker)."""
        try:
            store, _image, _layer = self.context()
            save_store_labels(self.viewer, store)
        except (HitlError, ValueError) as exc:
            self.show_error(exc)
            return False
        strategy = self.strategy_combo.currentText()

        def done(ranking: Any) -> None:
            self.store_path = str(store.path)
            self.candidates = [(it.image, it.index) for it in ranking.items if it.route != "done"]
            self._mark_candidates()
            self.status.setText(f"{len(self.candidates)} candidates by {strategy}. Next.")

        return self.jobs.start(
            "Rank", lambda token: rank_project(store, strategy, cancel=token), done
        )

    def _mark_candidates(self) -> None:
        confirmed = set()
        if self.store_path is not None:
            store = ProjectStore.open(self.store_path)
            confirmed = {c.key for c in load_clicks(store) if c.confirmed}
        self.candidate_list.blockSignals(True)
        row = self.candidate_list.currentRow()
        self.candidate_list.clear()
        for image, index in self.candidates:
            key = self._key(image, index)
            self.candidate_list.addItem(("✓ " if key in confirmed else "   ") + key)
        self.candidate_list.setCurrentRow(row)
        self.candidate_list.blockSignals(False)

    def next_candidate(self) -> None:
        """Show the next candidate (after the selected one) and compute its Grad-CAM."""
        if not self.candidates:
            self.status.setText("Rank candidates first.")
            return
        row = (self.candidate_list.currentRow() + 1) % len(self.candidates)
        self.candidate_list.setCurrentRow(row)

    def _candidate_chosen(self, row: int) -> None:
        if not 0 <= row < len(self.candidates) or self.store_path is None:
            return
        image, index = self.candidates[row]
        store = ProjectStore.open(self.store_path, "a")
        layer = show_store_image(self.viewer, store, image)
        if layer is None:
            return
        if index is not None and np.ndim(layer.data) >= 3:
            world = layer.data_to_world([index, 0, 0])
            self.viewer.dims.set_point(self.viewer.dims.ndim - 3, world[-3])
        if self.region_combo.currentText() == REGIONS[0]:
            self.region_combo.setCurrentText("whole image")
        self.compute()

    # ------------------------------------------------------------ fine-tuning
    def fine_tune(self) -> bool:
        """Fine-tune on the confirmed clicks (in a worker), then re-explain and re-predict."""
        if self.store_path is None:
            self.status.setText("Compute and click first.")
            return False
        store = ProjectStore.open(self.store_path, "a")
        sets = [c for c in load_clicks(store) if c.confirmed]
        if not sets:
            self.status.setText("Confirm the clicks of at least one image first.")
            return False
        exp = self.explanation
        config = SteerConfig(steps=self.steps_spin.value(),
                             layer=None if self.layer_combo.currentText() == "default"
                             else self.layer_combo.currentText())  # fmt: skip
        superpixel = self.superpixel_combo.currentText()

        def job(token: Any) -> Any:
            report, state = yield from guide_project(
                store, sets, config, superpixel=superpixel, cancel=token
            )
            after = pred = None
            if exp is not None:
                yield Progress(0, 1, "explaining again")
                after = yield from explain_project_image(
                    store, exp.image, exp.class_name, mask=exp.mask, index=exp.index,
                    attribution=exp.attribution.method if exp.attribution else None,
                    layer=exp.cam.layer, state=state, cancel=token,
                )  # fmt: skip
                pred = yield from predict_project_image(
                    store, exp.image, state, index=exp.index, cancel=token
                )
            return report, state, after, pred

        return self.jobs.start("Fine-tune", job, lambda out: self._tuned(store, exp, *out))

    def _tuned(self, store: ProjectStore, before: Any, report: Any, state: Any,
               after: Any, pred: Any) -> None:  # fmt: skip
        save_clicks(store, [])
        self.clicks.clear()
        self._mark_candidates()
        lines = [
            f"{n}: distance {b.distance:.3f}→{a.distance:.3f}, ignored share "
            f"{b.negative_share:.3f}→{a.negative_share:.3f}"
            for n, b, a in zip(report.names, report.before, report.after, strict=True)
        ]
        if before is not None and after is not None:
            like = self._like(before.image)
            names = attention_layer_names(before.image)
            meta = {META: {"role": "result", "store": str(store.path), "image": before.image}}
            old, _ = ensure_layer(self.viewer, names["before"], "image", like, np.float32,
                                  colormap="inferno", contrast_limits=(0.0, 1.0), opacity=0.85,
                                  blending="additive", visible=False, metadata=meta)  # fmt: skip
            write_part(old, before.cam.map, before.index, None)
            pred_name = f"{before.image} prediction"
            if pred_name in self.viewer.layers:  # keep the old prediction to compare
                prev = self.viewer.layers[pred_name]
                kept, _ = ensure_layer(self.viewer, names["prediction_before"], "labels", like,
                                       np.uint16, colormap=prev.colormap, opacity=0.6,
                                       visible=False, metadata=meta)  # fmt: skip
                kept.data = np.array(prev.data, copy=True)
            self.show_explanation(after, like, str(store.path))
            show_prediction(self.viewer, before.image, like, pred, store.classes,
                            index=before.index)  # fmt: skip
            self._draw_clicks(before.image)
        self.status.setText(
            f"Fine-tuned ({report.steps} steps, {report.seconds:.1f} s), model iteration "
            f"{state.iteration}. " + "; ".join(lines) + ". Revert puts the old model back."
        )

    def revert(self) -> bool:
        """Put the model from before the last fine-tuning back; re-explain the image."""
        if self.store_path is None:
            try:
                self.store_path = str(self.context()[0].path)
            except HitlError as exc:
                self.show_error(exc)
                return False
        store = ProjectStore.open(self.store_path, "a")
        try:
            state = revert_guidance(store)
        except HitlError as exc:
            self.show_error(exc)
            return False
        self.status.setText(f"Reverted to the model of iteration {state.iteration}.")
        if self.explanation is not None:
            self.compute_same()
        return True

    def compute_same(self) -> bool:
        """Recompute the current explanation (same image, region, class) with the current model."""
        exp = self.explanation
        if exp is None or self.store_path is None:
            return False
        store = ProjectStore.open(self.store_path, "a")
        like = self._like(exp.image)

        def job(token: Any) -> Any:
            return (
                yield from explain_project_image(
                    store, exp.image, exp.class_name, mask=exp.mask, index=exp.index,
                    attribution=exp.attribution.method if exp.attribution else None,
                    layer=exp.cam.layer, cancel=token,
                )
            )  # fmt: skip

        return self.jobs.start(
            "Explain", job, lambda e: self.show_explanation(e, like, str(store.path))
        )

    # ---------------------------------------------------------------- closing
    def release(self) -> None:
        """Leave click mode and release the mouse callback (closing, see DockWidget)."""
        if self.click_mode:
            self.set_click_mode(False)
        if self._on_mouse in self.viewer.mouse_drag_callbacks:
            self.viewer.mouse_drag_callbacks.remove(self._on_mouse)


def _diverging() -> Any:
    """Red (against the class) – black (nothing) – green (for it): added over the image, so
    bands that do not matter leave it as it is."""
    from napari.utils.colormaps import Colormap

    colors = [[0.95, 0.25, 0.2, 1.0], [0.0, 0.0, 0.0, 1.0], [0.3, 0.95, 0.35, 1.0]]
    return Colormap(colors, name="hitl attribution")


def _region_text(region: Region) -> str:
    if region.kind == "box" and region.box is not None:
        return "box:" + ",".join(str(v) for v in region.box)
    if region.kind == "segment" and region.point is not None:
        return f"segment:{region.point[0]},{region.point[1]}"
    return "image"
