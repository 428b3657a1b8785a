"""The napari reader on what users open: stores, plain TIFFs, folders; and what it declines."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from napari_hitl._napari.reader import get_reader
from napari_hitl.core.io.rasters import Raster
from napari_hitl.core.store import ProjectStore, add_image
from napari_hitl.core.store.classes import make_classes


def test_declines_what_it_does_not_read(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    assert get_reader(str(tmp_path / "a.png")) is None
    (tmp_path / "empty").mkdir()
    assert get_reader(str(tmp_path / "empty")) is None


def test_store_layers_first_image_visible(tmp_path, rng):
    store = ProjectStore.create(tmp_path / "p.zarr", classes=make_classes(["a", "b"]))
    for name in ("one", "two"):
        add_image(
            store,
            Raster(rng.random((4, 16, 20)).astype(np.float32), "CYX", ["B02", "B03", "B04", "B08"]),
            name,
        )
    store.write_labels("two", np.ones((16, 20), np.uint8))
    layers = get_reader(str(store.path))(str(store.path))
    names = [kw["name"] for _d, kw, _k in layers]
    assert names == ["one", "one bands", "one labels", "two", "two bands", "two labels"]
    vis = {kw["name"]: kw.get("visible", True) for _d, kw, _k in layers}
    assert vis["one"] and vis["one labels"] and not vis["two"] and not vis["two labels"]
    comp = np.asarray(layers[0][0])
    assert comp.shape == (16, 20, 3) and comp.min() >= 0 and comp.max() <= 1
    assert np.asarray(layers[5][0]).all()
    assert layers[2][1]["metadata"]["napari_hitl"]["image"] == "one"


def test_folder_same_shapes_stack_and_mixed_shapes_split(tmp_path, rng):
    same = tmp_path / "same"
    same.mkdir()
    for i in range(3):
        tifffile.imwrite(same / f"im{i}.tif", rng.integers(0, 255, (10, 12)).astype(np.uint8))
    (same / "notes.txt").write_text("ignored")
    layers = get_reader(str(same))(str(same))
    assert len(layers) == 1 and layers[0][0].shape == (3, 10, 12)
    assert layers[0][1]["metadata"]["napari_hitl_files"] == ["im0", "im1", "im2"]

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    iio.imwrite(mixed / "a.png", rng.integers(0, 255, (8, 8, 3)).astype(np.uint8))
    tifffile.imwrite(mixed / "b.tif", rng.integers(0, 255, (9, 7)).astype(np.uint8))
    (mixed / "broken.tif").write_bytes(b"not a tiff" * 5)
    with pytest.warns(UserWarning, match=r"broken\.tif"):
        layers = get_reader(str(mixed))(str(mixed))
    names = [kw["name"] for _d, kw, _k in layers]
    assert names == ["a RGB", "a", "b"]
