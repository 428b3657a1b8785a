"""napari sample data: the synthetic 14-band + DSM scene with its ground truth."""

from __future__ import annotations

import os
from pathlib import Path

from napari_hitl._napari.layers import LayerData, direct_colormap, store_image_layers
from napari_hitl.core.sample.store import GROUND_TRUTH, SAMPLE_IMAGE, build_sample_store
from napari_hitl.core.store import ProjectStore


def sample_store_path() -> Path:
    """Where the sample project lives: ``$NAPARI_HITL_SAMPLE_DIR`` or the user cache."""
    base = os.environ.get("NAPARI_HITL_SAMPLE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "napari-hitl"
    )
    return Path(base) / "sample_scene.zarr"


def open_sample_store(rebuild: bool = False) -> ProjectStore:
    """Open the sample project, building it on first use (deterministic, ~1 s)."""
    path = sample_store_path()
    if path.exists() and not rebuild:
        try:
            store = ProjectStore.open(path, mode="a")
            if SAMPLE_IMAGE in store:
                return store
        except Exception:  # a damaged cache is rebuilt, it holds nothing of the user's
            pass
    path.parent.mkdir(parents=True, exist_ok=True)
    return build_sample_store(path, overwrite=True)


def sample_scene() -> list[LayerData]:
    """Layers of the sample scene: RGB composite, the 15 bands, labels and the ground truth."""
    store = open_sample_store()
    layers = store_image_layers(store, SAMPLE_IMAGE)
    layers.append(
        (
            store.read_derived(SAMPLE_IMAGE, GROUND_TRUTH),
            {
                "name": "ground truth",
                "visible": False,
                "opacity": 0.5,
                "colormap": direct_colormap(store.classes),
            },
            "labels",
        )
    )
    return layers
