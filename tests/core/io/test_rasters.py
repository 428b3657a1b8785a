"""Reading source rasters: layouts, metadata, stacking, band choice, and clear errors."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
from tests.helpers import write_geotiff

from napari_hitl.core.errors import InputFileError
from napari_hitl.core.io.rasters import (
    add_height_band,
    read_mask,
    read_raster,
    select_bands,
    split_axis,
    stack_rasters,
)


def test_geotiff_band_first_keeps_names_crs_nodata(tmp_path, rng):
    data = rng.integers(0, 5000, (15, 40, 30)).astype(np.int16)
    names = [f"B{i:02d}" for i in range(1, 15)] + ["DSM"]
    path = write_geotiff(tmp_path / "a.tif", data, names, nodata=-9999)
    r = read_raster(path)
    assert r.axes == "CYX"
    assert r.band_names == names
    assert r.nodata == -9999
    assert r.georef is not None and r.georef.crs == "EPSG:32633"
    assert r.georef.transform == (10.0, 0.0, 465181.05, 0.0, -10.0, 5080254.63)
    np.testing.assert_array_equal(np.asarray(r.data), data)


def test_band_last_and_multipage_tiff(tmp_path, rng):
    data = rng.random((20, 24, 5)).astype(np.float32)
    tifffile.imwrite(tmp_path / "last.tif", data, photometric="minisblack", planarconfig="contig")
    r = read_raster(tmp_path / "last.tif")
    assert r.axes == "CYX" and r.data.shape == (5, 20, 24)
    np.testing.assert_array_equal(np.asarray(r.data), np.moveaxis(data, -1, 0))

    pages = rng.integers(0, 255, (4, 16, 16)).astype(np.uint8)
    with tifffile.TiffWriter(tmp_path / "pages.tif") as tw:
        for p in pages:
            tw.write(p, photometric="minisblack", metadata=None)
    r = read_raster(tmp_path / "pages.tif")
    assert r.data.shape == (4, 16, 16)
    np.testing.assert_array_equal(np.asarray(r.data), pages)


def test_png_jpeg_npy(tmp_path, rng):
    rgb = rng.integers(0, 255, (12, 10, 3)).astype(np.uint8)
    iio.imwrite(tmp_path / "a.png", rgb)
    r = read_raster(tmp_path / "a.png")
    assert r.band_names == ["R", "G", "B"]
    np.testing.assert_array_equal(np.asarray(r.data), np.moveaxis(rgb, -1, 0))
    iio.imwrite(tmp_path / "g.jpg", rgb[..., 0])
    assert read_raster(tmp_path / "g.jpg").data.shape == (1, 12, 10)
    np.save(tmp_path / "x.npy", rng.random((30, 31, 6)).astype(np.float32))
    assert read_raster(tmp_path / "x.npy").data.shape == (6, 30, 31)
    assert read_raster(tmp_path / "x.npy", layout="band-first").data.shape == (30, 31, 6)


def test_stack_single_band_files_and_shape_mismatch(tmp_path, rng):
    paths = []
    for name in ("red", "green", "blue", "nir"):
        p = tmp_path / f"{name}_patch.TIF"
        tifffile.imwrite(p, rng.integers(0, 60000, (32, 32)).astype(np.uint16))
        paths.append(p)
    r = stack_rasters([read_raster(p) for p in paths])
    assert r.band_names == ["red", "green", "blue", "nir"]  # shared "_patch" dropped
    assert r.data.shape == (4, 32, 32)
    tifffile.imwrite(tmp_path / "odd.tif", np.zeros((31, 32), np.uint16))
    with pytest.raises(InputFileError, match=r"odd\.tif.*shape \(31, 32\).*differs"):
        stack_rasters([read_raster(paths[0]), read_raster(tmp_path / "odd.tif")])


def test_select_bands_and_height_band(tmp_path, rng):
    data = rng.random((14, 8, 8)).astype(np.float32)
    names = [f"B{i}" for i in range(14)]
    r = read_raster(write_geotiff(tmp_path / "s.tif", data, names))
    kept = select_bands(r, ["B3", "1", 13, "B7", "B0"])
    assert kept.band_names == ["B3", "B1", "B13", "B7", "B0"]
    np.testing.assert_array_equal(np.asarray(kept.data), data[[3, 1, 13, 7, 0]])
    with pytest.raises(InputFileError, match="no band named 'B99'"):
        select_bands(r, ["B99"])
    with pytest.raises(InputFileError, match="out of range"):
        select_bands(r, [14])
    np.save(tmp_path / "dsm.npy", np.full((8, 8), 120.5, np.float32))
    with_dsm = add_height_band(kept, read_raster(tmp_path / "dsm.npy"))
    assert with_dsm.band_names[-1] == "DSM" and with_dsm.roles[-1] == "dsm"
    assert with_dsm.data.shape == (6, 8, 8)
    np.save(tmp_path / "two.npy", np.zeros((2, 8, 8), np.float32))
    with pytest.raises(InputFileError, match="one band"):
        add_height_band(kept, read_raster(tmp_path / "two.npy"))


def test_stacks_need_axes_and_split(tmp_path, rng):
    arr = rng.random((5, 10, 11, 13)).astype(np.float32)  # T, Y, X, C like eo-learn
    np.save(tmp_path / "ts.npy", arr)
    with pytest.raises(InputFileError, match="--axes"):
        read_raster(tmp_path / "ts.npy")
    r = read_raster(tmp_path / "ts.npy", axes="TYXC")
    assert r.axes == "CTYX" and r.data.shape == (13, 5, 10, 11)
    parts = split_axis(r, "T", "scene")
    assert [n for n, _ in parts] == [f"scene_t{i}" for i in range(5)]
    np.testing.assert_array_equal(np.asarray(parts[3][1].data), np.moveaxis(arr[3], -1, 0))


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "empty"),
        (b"this is not a tiff at all" * 10, "not a readable TIFF"),
    ],
)
def test_bad_files_name_the_file(tmp_path, content, match):
    p = tmp_path / "bad.tif"
    p.write_bytes(content)
    with pytest.raises(InputFileError, match=match) as err:
        read_raster(p)
    assert "bad.tif" in str(err.value)


def test_unsupported_inputs(tmp_path):
    with pytest.raises(InputFileError, match="no such file"):
        read_raster(tmp_path / "missing.tif")
    np.save(tmp_path / "c.npy", np.zeros((3, 4, 4), np.complex64))
    with pytest.raises(InputFileError, match="complex"):
        read_raster(tmp_path / "c.npy")
    np.save(tmp_path / "e.npy", np.zeros((0, 4), np.float32))
    with pytest.raises(InputFileError, match="empty"):
        read_raster(tmp_path / "e.npy")
    (tmp_path / "x.bmp").write_bytes(b"BM....")
    with pytest.raises(InputFileError, match="unsupported file type"):
        read_raster(tmp_path / "x.bmp")


def test_read_mask(tmp_path):
    m = np.array([[0, 1], [2, 255]], np.uint8)
    iio.imwrite(tmp_path / "m.png", m)
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), m)
    iio.imwrite(tmp_path / "rgb.png", np.stack([m, m, m], -1))
    np.testing.assert_array_equal(read_mask(tmp_path / "rgb.png"), m)
    np.save(tmp_path / "f.npy", np.array([[0.5, 1.0]]))
    with pytest.raises(InputFileError, match="integers"):
        read_mask(tmp_path / "f.npy")


def _write_ome_tiff(path, data, names):
    tifffile.imwrite(path, data, ome=True, metadata={"axes": "CYX", "Channel": {"Name": names}})
    return path


def test_tiff_band_names_from_ome_imagej_and_tifffile_metadata(tmp_path, rng):
    data = rng.integers(0, 900, (3, 12, 10)).astype(np.uint16)
    r = read_raster(_write_ome_tiff(tmp_path / "cells.ome.tif", data, ["DAPI", "GFP", "RFP"]))
    assert r.band_names == ["DAPI", "GFP", "RFP"]
    np.testing.assert_array_equal(np.asarray(r.data), data)

    tifffile.imwrite(
        tmp_path / "ij.tif", data, imagej=True, metadata={"axes": "CYX", "Labels": ["a", "b", "c"]}
    )
    assert read_raster(tmp_path / "ij.tif").band_names == ["a", "b", "c"]

    # a script's own JSON description, band-last: the names follow the channel axis
    tifffile.imwrite(
        tmp_path / "s2.tif",
        np.moveaxis(data, 0, -1),
        photometric="minisblack",
        planarconfig="contig",
        metadata={"band_names": ["B04", "B08", "B11"]},
    )
    r = read_raster(tmp_path / "s2.tif")
    assert r.band_names == ["B04", "B08", "B11"]
    np.testing.assert_array_equal(np.asarray(r.data), data)


def test_tiff_names_that_do_not_fit_are_not_used_and_gdal_wins(tmp_path, rng):
    data = rng.integers(0, 900, (3, 12, 10)).astype(np.int16)
    tifffile.imwrite(
        tmp_path / "odd.tif",
        data,
        photometric="minisblack",
        metadata={"band_names": ["only", "two"]},
    )
    assert read_raster(tmp_path / "odd.tif").band_names == ["band_0", "band_1", "band_2"]
    tifffile.imwrite(
        tmp_path / "nums.tif", data, photometric="minisblack", metadata={"band_names": [1, 2, 3]}
    )
    assert read_raster(tmp_path / "nums.tif").band_names == ["band_0", "band_1", "band_2"]
    path = write_geotiff(tmp_path / "g.tif", data, ["red", "nir", "swir"], nodata=-1)
    assert read_raster(path).band_names == ["red", "nir", "swir"]


def test_ome_channel_names_parser_tolerates_damage():
    from napari_hitl.core.io.tiff_names import ome_channel_names

    assert ome_channel_names("<OME><Image") == []  # truncated XML: no names, no error
    assert ome_channel_names("<OME><Image/></OME>") == []
    xml = (
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><Image><Pixels>'
        '<Channel Name="DAPI"/><Channel/><Channel Name=" GFP "/></Pixels></Image></OME>'
    )
    assert ome_channel_names(xml) == ["DAPI", None, "GFP"]


def test_ome_tiff_with_an_unnamed_channel_fills_its_name(tmp_path, rng):
    data = rng.integers(0, 900, (2, 12, 10)).astype(np.uint16)
    path = _write_ome_tiff(tmp_path / "c.ome.tif", data, ["DAPI", ""])
    assert read_raster(path).band_names == ["DAPI", "band_1"]
