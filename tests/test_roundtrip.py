"""A 15-band GeoTIFF with band names and a CRS survives import → store → export unchanged,
through the CLI and through the napari reader/writer; label exports are exact in every format."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from tests.helpers import write_geotiff

from napari_hitl._napari.reader import get_reader
from napari_hitl._napari.writer import write_image, write_labels
from napari_hitl.cli import main
from napari_hitl.core.io.export import ExportError, write_raster
from napari_hitl.core.io.rasters import read_raster
from napari_hitl.core.store import ProjectStore

NAMES = [f"B{i:02d}" for i in range(1, 15)] + ["DSM"]


def _geotiff(tmp_path, rng):
    data = rng.integers(-100, 12000, (15, 64, 48)).astype(np.int16)
    return data, write_geotiff(tmp_path / "scene.tif", data, NAMES, nodata=-100)


def _same_geotiff(a, b):
    ra, rb = read_raster(a), read_raster(b)
    np.testing.assert_array_equal(np.asarray(ra.data), np.asarray(rb.data))
    assert ra.band_names == rb.band_names
    assert ra.nodata == rb.nodata
    assert ra.georef == rb.georef
    with tifffile.TiffFile(a) as ta, tifffile.TiffFile(b) as tb:
        for code in (33550, 33922, 34735):
            assert tuple(ta.pages[0].tags[code].value) == tuple(tb.pages[0].tags[code].value)


def test_geotiff_roundtrip_cli(tmp_path, rng, capsys):
    data, src = _geotiff(tmp_path, rng)
    store = tmp_path / "p.zarr"
    assert main(["import", str(store), str(src)]) == 0
    assert "EPSG:32633" in capsys.readouterr().out
    out = tmp_path / "out.tif"
    assert (
        main(["export", str(store), "--image", "scene", "--what", "image", "--out", str(out)]) == 0
    )
    _same_geotiff(src, out)
    info = ProjectStore.open(store).image_info("scene")
    assert info.dsm_band == 14 and info.bands[14].unit == "m"
    assert info.invalid_pixels == int(np.all(data == -100, axis=0).sum())


def test_geotiff_roundtrip_napari_reader_writer(tmp_path, rng):
    _data, src = _geotiff(tmp_path, rng)
    store = tmp_path / "p.zarr"
    main(["import", str(store), str(src)])
    reader = get_reader(str(store))
    assert reader is not None
    layers = reader(str(store))
    by_name = {kw["name"]: (d, kw, kind) for d, kw, kind in layers}
    assert set(by_name) == {"scene", "scene bands", "scene labels"}
    d, kw, _ = by_name["scene bands"]
    assert kw["metadata"]["napari_hitl"]["band_names"] == NAMES
    out = tmp_path / "from_napari.tif"
    write_image(str(out), d, kw)
    _same_geotiff(src, out)
    # the plain-TIFF path: reader on the GeoTIFF itself, writer back out
    layers = get_reader(str(src))(str(src))
    d, kw, _ = next(x for x in layers if x[1]["name"] == "scene")
    out2 = tmp_path / "again.tif"
    write_image(str(out2), d, kw)
    np.testing.assert_array_equal(
        np.asarray(read_raster(out2).data), np.asarray(read_raster(src).data)
    )
    assert read_raster(out2).band_names == NAMES


@pytest.mark.parametrize("suffix", [".tif", ".png", ".zarr", ".npy"])
def test_labels_roundtrip_exact(tmp_path, rng, suffix):
    _data, src = _geotiff(tmp_path, rng)
    labels = rng.integers(0, 6, (64, 48)).astype(np.uint16)
    labels[0, 0] = 300  # beyond uint8
    store_path = tmp_path / "p.zarr"
    main(["import", str(store_path), str(src)])
    store = ProjectStore.open(store_path, "a")
    store._ensure_classes(np.unique(labels).tolist())
    store.write_labels("scene", labels)
    out = tmp_path / f"labels{suffix}"
    assert main(["export", str(store_path), "--image", "scene", "--out", str(out)]) == 0
    back = np.asarray(read_raster(out).data)[0]
    np.testing.assert_array_equal(back, labels)
    if suffix == ".tif":
        assert read_raster(out).georef == read_raster(src).georef
    # and back in through --labels
    assert main(["import", str(store_path), str(src), "--name", "again", "--labels", str(out)]) == 0
    np.testing.assert_array_equal(ProjectStore.open(store_path).labels("again"), labels)
    # the napari writer gives the same file
    meta = {
        "name": "scene labels",
        "metadata": {"napari_hitl": {"store": str(store_path), "image": "scene"}},
    }
    out2 = tmp_path / f"napari_labels{suffix}"
    write_labels(str(out2), labels, meta)
    np.testing.assert_array_equal(np.asarray(read_raster(out2).data)[0], labels)


def test_png_refuses_what_it_cannot_hold(tmp_path):
    with pytest.raises(ExportError, match=r"PNG holds integers only.*use \.tif"):
        write_raster(tmp_path / "c.png", np.zeros((4, 4), np.float32), band_axis=False)
    with pytest.raises(ExportError, match="unsupported export format"):
        write_raster(tmp_path / "c.bmp", np.zeros((4, 4), np.uint8), band_axis=False)


def test_real_sen1floods_roundtrip(tmp_path, shared_data):
    src = shared_data / "sen1floods11_sample" / "Spain_7370579_S2Hand.tif"
    if not src.exists():
        pytest.skip("sen1floods11 sample missing")
    store = tmp_path / "s.zarr"
    assert main(["import", str(store), str(src), "--name", "spain"]) == 0
    out = tmp_path / "spain.tif"
    assert (
        main(["export", str(store), "--image", "spain", "--what", "image", "--out", str(out)]) == 0
    )
    _same_geotiff(src, out)
    info = ProjectStore.open(store).image_info("spain")
    assert info.georef.crs == "EPSG:4326"
    assert [info.band_names[i] for i in info.rgb] == ["B4", "B3", "B2"]
