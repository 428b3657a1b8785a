"""GeoTIFF fidelity: PixelIsPoint rasters, CRSs without an EPSG code, GDAL scale/offset/units
and metadata items survive import → store → export; exports are written tile by tile."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from tests.helpers import write_geotiff

from napari_hitl.cli import main
from napari_hitl.core.io.geo import GDAL_METADATA, parse_gdal_metadata
from napari_hitl.core.io.rasters import read_raster, select_bands
from napari_hitl.core.store import ProjectStore

GEO_TAGS = (33550, 33922, 34735, 34736, 34737)
X0, Y0, STEP = 500000.0, 4200000.0, 10.0


def _geotiff(path, data, geokeys, double=(), ascii_="", items=()):
    names = [f"band{i}" for i in range(data.shape[0])]
    return write_geotiff(
        path,
        data,
        names,
        geokeys=geokeys,
        tiepoint=(0.0, 0.0, 0.0, X0, Y0, 0.0),
        scale=(STEP, STEP, 0.0),
        double_params=double,
        ascii_params=ascii_,
        gdal_items=items,
    )


# PixelIsPoint (GTRasterTypeGeoKey 1025 = 2) on EPSG:32633
POINT_KEYS = (1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 2, 3072, 0, 1, 32633)
# A user-defined Lambert azimuthal equal-area projection on a WGS 84 base: no EPSG code
CITATION = "Custom LAEA Europe|"
LAEA_KEYS = (
    1, 1, 0, 9,
    1024, 0, 1, 1,
    1025, 0, 1, 1,
    2048, 0, 1, 4326,
    3072, 0, 1, 32767,
    3073, 34737, len(CITATION), 0,
    3074, 0, 1, 32767,
    3075, 0, 1, 10,
    3088, 34736, 1, 0,
    3089, 34736, 1, 1,
)  # fmt: skip


def _roundtrip(tmp_path, src, capsys=None):
    store = tmp_path / "p.zarr"
    assert main(["import", str(store), str(src), "--name", "scene"]) == 0
    out = tmp_path / "out.tif"
    assert (
        main(["export", str(store), "--image", "scene", "--what", "image", "--out", str(out)]) == 0
    )
    return store, out


def _tags(path):
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages[0].tags
        return {code: tags[code].value for code in GEO_TAGS if code in tags}


def test_pixel_is_point_transform_matches_gdal_and_round_trips(tmp_path, rng):
    data = rng.integers(0, 1000, (2, 32, 24)).astype(np.uint16)
    src = _geotiff(tmp_path / "point.tif", data, POINT_KEYS)
    georef = read_raster(src).georef
    assert georef.pixel_is_point and georef.crs == "EPSG:32633"
    # GDAL reports the corner of the first pixel: half a pixel up and left of the tie point
    assert georef.transform == (STEP, 0.0, X0 - STEP / 2, 0.0, -STEP, Y0 + STEP / 2)
    _store, out = _roundtrip(tmp_path, src)
    assert _tags(out) == _tags(src)
    assert read_raster(out).georef == georef


def test_crs_without_epsg_code_is_kept_and_shown(tmp_path, rng, capsys):
    data = rng.integers(0, 1000, (2, 32, 24)).astype(np.uint16)
    src = _geotiff(tmp_path / "laea.tif", data, LAEA_KEYS, (10.0, 52.0), CITATION)
    georef = read_raster(src).georef
    assert georef.crs == "user-defined: Custom LAEA Europe"  # not the EPSG:4326 base
    assert georef.transform == (STEP, 0.0, X0, 0.0, -STEP, Y0)
    store, out = _roundtrip(tmp_path, src)
    assert "user-defined: Custom LAEA Europe" in capsys.readouterr().out
    assert ProjectStore.open(store).image_info("scene").georef.crs == georef.crs
    assert _tags(out) == _tags(src)
    back = read_raster(out).georef
    assert (back.crs, back.transform) == (georef.crs, georef.transform)


ITEMS = [
    {"name": "SCALE", "sample": 0, "role": "scale", "text": "0.0001"},
    {"name": "OFFSET", "sample": 0, "role": "offset", "text": "-0.1"},
    {"name": "", "sample": 0, "role": "unittype", "text": "reflectance"},
    {"name": "SCALE", "sample": 1, "role": "scale", "text": "0.01"},
    {"name": "", "sample": 1, "role": "unittype", "text": "m"},
    {"name": "ACQUISITION_DATE", "sample": None, "role": None, "text": "2024-06-01"},
]


def _non_description(path):
    with tifffile.TiffFile(path) as tif:
        xml = str(tif.pages[0].tags[GDAL_METADATA].value)
    return [i for i in parse_gdal_metadata(xml) if i["role"] != "description"]


def test_scale_offset_units_and_metadata_survive(tmp_path, rng):
    data = rng.integers(0, 1000, (2, 32, 24)).astype(np.uint16)
    src = _geotiff(tmp_path / "scaled.tif", data, POINT_KEYS, items=ITEMS)
    store, out = _roundtrip(tmp_path, src)
    bands = ProjectStore.open(store).image_info("scene").bands
    assert [b.unit for b in bands] == ["reflectance", "m"]
    key = lambda i: (i["sample"] is None, i["sample"] or 0, i["name"], i["role"] or "")  # noqa: E731
    assert sorted(_non_description(out), key=key) == sorted(ITEMS, key=key)
    # a label export carries the raster-wide items only, never one band's scale
    labels = tmp_path / "labels.tif"
    main(["export", str(store), "--image", "scene", "--what", "labels", "--out", str(labels)])
    assert _non_description(labels) == [ITEMS[-1]]


def test_band_selection_keeps_each_bands_items(tmp_path, rng):
    data = rng.integers(0, 1000, (2, 16, 16)).astype(np.uint16)
    src = _geotiff(tmp_path / "scaled.tif", data, POINT_KEYS, items=ITEMS)
    picked = select_bands(read_raster(src), [1])
    assert picked.georef.band_metadata(0) == {"scale": "0.01", "unittype": "m"}
    assert picked.georef.dataset_metadata() == [ITEMS[-1]]


@pytest.mark.parametrize("suffix", [".tif", ".npy", ".zarr"])
def test_image_export_reads_the_image_block_by_block(tmp_path, rng, suffix, monkeypatch):
    """A large image is never read whole: every read the exporter makes is at most one block."""
    import napari_hitl.core.io.export as export

    data = rng.integers(0, 255, (2, 700, 600)).astype(np.uint8)
    store = ProjectStore.create(tmp_path / "p.zarr")
    from napari_hitl.core.io.rasters import Raster
    from napari_hitl.core.store import add_image

    add_image(store, Raster(data, "CYX", ["a", "b"]), "big")
    monkeypatch.setattr(export, "TILE_EDGE", 256)
    reads = []
    original = export._block

    def spy(source, key):
        block = original(source, key)
        reads.append(block.size)
        return block

    monkeypatch.setattr(export, "_block", spy)
    out = export.export_item(store, "big", "image", tmp_path / f"out{suffix}")
    assert max(reads) <= 256 * data.shape[-1] and sum(reads) == data.size  # a tile or a strip
    back = read_raster(out, axes="CYX") if suffix == ".npy" else read_raster(out)
    np.testing.assert_array_equal(np.asarray(back.data), data)
