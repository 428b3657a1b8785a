"""Import the Houston 2018 crop (a MATLAB .mat file) into a project store with the Python API.

.mat is not a supported import format; this example shows how any array you can load in Python
goes into a store: build a :class:`~napari_hitl.core.io.rasters.Raster` and call ``add_image``.

    python examples/houston_hyperspectral.py \
        ../shared/data/houston2018_crop/houston_dataset.mat houston.zarr
"""

from __future__ import annotations

import sys

import numpy as np
from scipy.io import loadmat

from napari_hitl.core.io.rasters import Raster
from napari_hitl.core.store import ProjectStore, add_image


def main(mat_path: str, store_path: str) -> ProjectStore:
    """Write the 48-band HS cube (labels taken every 4th pixel) and the RGB image to a store."""
    mat = loadmat(mat_path)
    hs = np.moveaxis(mat["hyprImg"], -1, 0)  # (48, 128, 128) uint16
    rgb = np.moveaxis(mat["rgbImg"], -1, 0)  # (3, 512, 512) uint8
    labels = mat["clasLabs"].astype(np.uint16)  # (512, 512), 0 = unlabelled
    store = ProjectStore.create(store_path, exist_ok=True)
    add_image(
        store, Raster(rgb, "CYX", ["R", "G", "B"]), "houston_rgb", labels=labels, overwrite=True
    )
    # The cube is 4x coarser: nearest-neighbour labels at its pixel centres.
    add_image(
        store,
        Raster(hs, "CYX", [f"HS{i:02d}" for i in range(hs.shape[0])]),
        "houston_hs",
        labels=labels[2::4, 2::4],
        rgb=(22, 12, 4),
        overwrite=True,
    )
    return store


if __name__ == "__main__":
    s = main(sys.argv[1], sys.argv[2])
    print(f"{s.path}: {', '.join(s.image_names())}; classes {[c.value for c in s.classes]}")
