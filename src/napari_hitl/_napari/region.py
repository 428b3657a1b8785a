"""The region rectangle of an image (the ``<image> region`` Shapes layer): drawn by the person,
it limits Add predictions, Infer and the preview to the pixels inside it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from napari_hitl._napari.layers import META
from napari_hitl._napari.names import result_layer_names
from napari_hitl.core.tiling import Box

REGION_STYLE = {"edge_color": "yellow", "face_color": "transparent", "edge_width": 2}


def draw_region(viewer: Any, image: str, labels: Any, on_change: Callable[[], None]) -> Any:
    """Add (or select) the ``<image> region`` Shapes layer over ``labels`` in rectangle mode;
    ``on_change`` is called whenever its rectangles change. Returns the layer."""
    name = result_layer_names(image)["region"]
    if name not in viewer.layers:
        added = viewer.add_shapes(
            name=name, scale=labels.scale, translate=labels.translate, **REGION_STYLE
        )
        added.events.data.connect(lambda _e: on_change())  # once per layer
    shapes = viewer.layers[name]
    viewer.layers.selection.active = shapes
    shapes.mode = "add_rectangle"
    return shapes


def region_box(viewer: Any, labels: Any) -> Box | None:
    """``(row0, row1, col0, col1)`` of the last rectangle of the region layer of ``labels``'s
    image, in pixels of ``labels``; ``None`` when there is none (the whole image)."""
    if labels is None:
        return None
    image = labels.metadata.get(META, {}).get("image")
    name = result_layer_names(image)["region"] if image else None
    if name not in viewer.layers or not len(viewer.layers[name].data):
        return None
    shapes = viewer.layers[name]
    world = [shapes.data_to_world(v) for v in np.asarray(shapes.data[-1])]
    pix = np.array([np.asarray(labels.world_to_data(w))[-2:] for w in world])
    r0, c0 = np.floor(pix.min(0)).astype(int)
    r1, c1 = np.ceil(pix.max(0)).astype(int)
    h, w = np.asarray(labels.data).shape[-2:]
    return max(r0, 0), min(r1, h), max(c0, 0), min(c1, w)
