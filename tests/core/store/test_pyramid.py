"""Multiscale pyramids written at import for big images, and the lazy multiscale reader."""

from __future__ import annotations

import numpy as np
import pytest

from napari_hitl.core.errors import Cancelled
from napari_hitl.core.io.rasters import Raster
from napari_hitl.core.progress import CancelToken, run_to_end
from napari_hitl.core.store import (
    ProjectStore,
    add_image,
    downsample2,
    import_raster,
    level_shape,
    pyramid_levels,
)


def test_levels_only_for_big_images():
    assert pyramid_levels((4096, 4096)) == 0
    assert pyramid_levels((4097, 300)) == 3  # 4097 → 2049 → 1025 → 513
    assert pyramid_levels((20000, 20000)) == 5  # ... → 625
    assert pyramid_levels((3, 20000, 100)) == 5  # stacks: Y and X only
    assert pyramid_levels((900, 700), force=True) == 0
    assert level_shape((3, 2101, 701), 2) == (3, 526, 176)


def test_downsample_means_odd_edges_and_integers():
    a = np.arange(15, dtype=np.uint16).reshape(1, 3, 5)
    out = downsample2(a)
    assert out.shape == (1, 2, 3) and out.dtype == np.uint16
    assert out[0, 0, 0] == round((0 + 1 + 5 + 6) / 4)
    assert out[0, 1, 2] == 14  # the odd corner repeated: (14 + 14 + 14 + 14) / 4
    f = np.ones((2, 4, 4), np.float32)
    f[0, 0, 0] = np.nan
    g = downsample2(f)
    assert np.isnan(g[0, 0, 0]) and g[1, 0, 0] == 1.0


def test_import_writes_levels_and_ngff_scales(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.random((3, 2101, 701)).astype(np.float32)
    store = ProjectStore.create(tmp_path / "p.zarr")
    steps = []
    run_to_end(
        import_raster(store, Raster(data, "CYX", ["r", "g", "b"]), "big", pyramid=True),
        steps.append,
    )
    assert any("pyramid level 2/2" in p.message for p in steps)
    levels = store.image_levels("big")
    assert [a.shape for a in levels] == [(3, 2101, 701), (3, 1051, 351), (3, 526, 176)]
    np.testing.assert_allclose(levels[1][...], downsample2(data), rtol=1e-6)
    np.testing.assert_allclose(levels[2][...], downsample2(downsample2(data)), rtol=1e-6)
    ome = dict(store._image_group("big").attrs)["ome"]["multiscales"][0]["datasets"]
    assert [d["path"] for d in ome] == ["0", "1", "2"]
    assert [d["coordinateTransformations"][0]["scale"] for d in ome][2] == [1.0, 4.0, 4.0]
    add_image(store, Raster(data[:, :100, :100], "CYX", ["r", "g", "b"]), "small")
    assert len(store.image_levels("small")) == 1  # small images: no pyramid by default


def test_cancel_during_the_pyramid_leaves_the_store_unchanged(tmp_path):
    data = np.ones((1, 1500, 1500), np.uint8)
    store = ProjectStore.create(tmp_path / "p.zarr")
    token = CancelToken()

    def cancel_in_pyramid(report):
        if "pyramid" in report.message:
            token.cancel()

    with pytest.raises(Cancelled):
        run_to_end(
            import_raster(store, Raster(data, "CYX", ["x"]), "img", pyramid=True, cancel=token),
            cancel_in_pyramid,
        )
    assert store.image_names() == []
    assert not any(p.name.startswith(".incoming") for p in (store.path / "images").iterdir())


@pytest.mark.gui
def test_reader_gives_multiscale_layers(tmp_path):
    from napari_hitl._napari.layers import composite_data, height_layer, store_image_layers

    rng = np.random.default_rng(1)
    data = rng.random((4, 1100, 900)).astype(np.float32)
    store = ProjectStore.create(tmp_path / "p.zarr")
    add_image(store, Raster(data, "CYX", ["r", "g", "b", "DSM"]), "big", pyramid=True)
    layers = {kwargs["name"]: (d, kwargs) for d, kwargs, _k in store_image_layers(store, "big")}
    comp, kw = layers["big"]
    assert kw["multiscale"] and [a.shape for a in comp] == [(1100, 900, 3), (550, 450, 3)]
    bands, kw = layers["big bands"]
    assert kw["multiscale"] and bands[1].shape == (4, 550, 450)
    assert layers["big labels"][0].shape == (1100, 900)  # labels stay one array to paint in
    assert len(composite_data(store, "big")) == 2
    height, kw, _ = height_layer(store, "big")
    assert kw["multiscale"] and height[1].shape == (550, 450)
