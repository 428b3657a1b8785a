"""Moving the view: show one image of a store, centre the camera on a pixel or a box; which
labels layer and slice are on show; saving the open labels layers.

napari-only helpers (no Qt) shared by the widgets.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_hitl._napari.layers import META, save_layer_labels, store_image_layers
from napari_hitl._napari.names import labels_name
from napari_hitl.core.errors import HitlError
from napari_hitl.core.store import ProjectStore


def camera(viewer: Any) -> Any:
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def show_store_image(viewer: Any, store: ProjectStore, name: str) -> Any:
    """Show image ``name``'s layers (added once, then reused by name), hide the other images of
    the same store, make its labels layer active; returns the labels layer (or ``None``)."""
    mine = []
    for layer in viewer.layers:
        meta = layer.metadata.get(META, {})
        if meta.get("store") != str(store.path):
            continue
        if meta.get("image") == name:
            mine.append(layer)
        else:
            if meta.get("role") == "height" and layer.visible:
                meta["was_visible"] = True  # shown again when its image comes back
            layer.visible = False
    if mine:
        roles = {layer.metadata[META]["role"] for layer in mine}
        for layer in mine:
            meta = layer.metadata[META]
            if meta["role"] == "height":
                layer.visible = meta.pop("was_visible", False) or layer.visible
            elif meta["role"] != "result":
                layer.visible = meta["role"] != "bands" or "composite" not in roles
    else:
        for data, kwargs, kind in store_image_layers(store, name):
            getattr(viewer, f"add_{kind}")(data, **kwargs)
    lab = labels_name(name)
    if lab in viewer.layers:
        viewer.layers.selection.active = viewer.layers[lab]
        return viewer.layers[lab]
    return None


def centre_on(
    viewer: Any,
    layer: Any,
    row: float,
    col: float,
    index: int | None = None,
    extent: tuple[float, float] | None = None,
) -> None:
    """Centre the camera on pixel ``(row, col)`` of ``layer`` (and on slice ``index`` of a
    stack); with ``extent`` (rows, cols) zoom so that much of the layer fills the canvas."""
    lead = [] if index is None else [index]
    ndim = np.ndim(layer.data)
    point = [0.0] * (ndim - 2 - len(lead)) + lead + [row, col]
    world = np.asarray(layer.data_to_world(point), float)
    if index is not None:
        axis = viewer.dims.ndim - 3
        if axis >= 0:
            viewer.dims.set_point(axis, world[-3])
    cam = camera(viewer)
    cam.center = tuple(world[-2:])
    if extent is not None:
        scale = np.abs(np.asarray(layer.scale, float)[-2:])
        size = np.asarray(viewer.canvas.size if hasattr(viewer, "canvas") else (600, 800), float)
        span = np.maximum(np.asarray(extent, float) * scale, 1e-9)
        cam.zoom = float(0.9 * np.min(size[-2:] / span))


def shown_labels_layer(viewer: Any) -> Any:
    """The labels layer of a project store on show: the active layer if it is one, else the
    first visible one (``None`` when there is none)."""
    active = viewer.layers.selection.active
    candidates = ([active] if active is not None else []) + [
        ly for ly in viewer.layers if ly.visible
    ]  # fmt: skip
    for ly in candidates:
        meta = ly.metadata.get(META, {})
        if meta.get("store") and meta.get("role") == "labels":
            return ly
    return None


def shown_project_image(viewer: Any) -> tuple[ProjectStore, str, Any]:
    """(store, image, labels layer) of the project image on show (:func:`shown_labels_layer`).

    Raises
    ------
    HitlError
        No image of a project store is open.
    """
    ly = shown_labels_layer(viewer)
    if ly is None:
        raise HitlError("open a project (Project widget) or the sample data first")
    meta = ly.metadata[META]
    return ProjectStore.open(meta["store"], "a"), meta["image"], ly


def plane_index(viewer: Any, layer: Any) -> int | None:
    """The slice of a Z/T stack ``layer`` on show (``None`` for a 2-D image or no layer)."""
    if layer is None or np.ndim(layer.data) < 3:
        return None
    point = np.asarray(layer.world_to_data(viewer.dims.point))
    return int(np.clip(np.round(point[-3]), 0, np.shape(layer.data)[0] - 1))


def save_store_labels(viewer: Any, store: ProjectStore) -> None:
    """Write every open labels layer of ``store`` into it (core jobs read the store)."""
    for ly in viewer.layers:
        meta = ly.metadata.get(META, {})
        if meta.get("store") == str(store.path) and meta.get("role") == "labels":
            save_layer_labels(store, ly)
