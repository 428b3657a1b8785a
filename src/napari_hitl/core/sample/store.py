"""Put the synthetic sample scene into a project store (the demo and the tests start here)."""

from __future__ import annotations

import os
from pathlib import Path

from napari_hitl.core.io.rasters import Raster
from napari_hitl.core.sample.scene import make_sample_scene
from napari_hitl.core.store import ProjectStore, add_image
from napari_hitl.core.store.classes import make_classes

SAMPLE_IMAGE = "sample"
GROUND_TRUTH = "ground_truth"


def build_sample_store(
    path: str | os.PathLike[str],
    shape: tuple[int, int] = (512, 512),
    seed: int = 0,
    n_images: int = 1,
    overwrite: bool = False,
) -> ProjectStore:
    """Create a store holding ``n_images`` sample scenes (seeds ``seed``, ``seed+1``, ...).

    Each image has 14 spectral bands and a DSM band; its ground truth is kept as the derived
    array ``"ground_truth"`` (never as labels: labels are what the human paints).
    """
    p = Path(path)
    if p.exists():
        if not overwrite:
            raise FileExistsError(f"{p} exists; pass overwrite=True to rebuild it")
        import shutil

        shutil.rmtree(p)
    first = make_sample_scene(shape, seed)
    store = ProjectStore.create(p, classes=make_classes(first.class_names, first.class_colors))
    for i in range(n_images):
        scene = first if i == 0 else make_sample_scene(shape, seed + i)
        name = SAMPLE_IMAGE if n_images == 1 else f"{SAMPLE_IMAGE}_{i:02d}"
        raster = Raster(
            data=scene.bands,
            axes="CYX",
            band_names=list(scene.band_names),
            sources=[f"synthetic:seed={seed + i}"] * len(scene.band_names),
            roles=["dsm" if n == "DSM" else "spectral" for n in scene.band_names],
        )
        add_image(
            store,
            raster,
            name,
            rgb=scene.rgb_bands,
            units=list(scene.units),
            wavelengths=list(scene.wavelengths_nm),
        )
        store.write_derived(name, GROUND_TRUTH, scene.ground_truth)
    return store
