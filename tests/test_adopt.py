"""Image layers of any shape become rasters the store can hold (or a clear refusal)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_hitl._napari.adopt import project_path_for, raster_from_layer
from napari_hitl.core.errors import HitlError


@pytest.mark.parametrize(
    ("shape", "rgb", "axes", "bands"),
    [
        ((20, 30), False, "CYX", 1),
        ((20, 30, 3), True, "CYX", 3),
        ((5, 20, 30, 4), True, "CZYX", 3),
        ((6, 20, 30), False, "CYX", 6),
        ((100, 20, 30), False, "CZYX", 1),
        ((2, 7, 20, 30), False, "CZYX", 2),
    ],
)
def test_layer_shapes(shape, rgb, axes, bands):
    r = raster_from_layer(np.zeros(shape, np.float32), rgb)
    assert r.axes == axes and r.data.shape[0] == bands == len(r.band_names)
    assert r.data.shape[-2:] == (20, 30)


def test_bad_shapes_and_paths():
    with pytest.raises(HitlError, match="2-D to 4-D"):
        raster_from_layer(np.zeros(5), False)
    assert project_path_for("x", "/data/scan 1.tif") == Path("/data/scan 1.hitl.zarr")
    assert project_path_for("a/b c", None).name == "a_b_c.zarr"
