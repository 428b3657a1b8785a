"""The project store: layout, metadata, labels/provenance, signatures, and failure safety."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import zarr
from tests.helpers import snapshot, write_geotiff

from napari_hitl.core.errors import (
    Cancelled,
    InputFileError,
    SchemaVersionError,
    StaleDataError,
    StoreError,
)
from napari_hitl.core.io.rasters import Raster, read_raster
from napari_hitl.core.progress import CancelToken, run_to_end
from napari_hitl.core.store import (
    PROVENANCE_HUMAN,
    ProjectStore,
    add_image,
    import_raster,
    machine_provenance,
)
from napari_hitl.core.store import pyramid as store_pyramid
from napari_hitl.core.store import staging as store_staging
from napari_hitl.core.store.classes import make_classes


def _raster(rng, c=4, h=40, w=50, dtype=np.float32):
    data = (rng.random((c, h, w)) * 1000).astype(dtype)
    return Raster(data, "CYX", [f"b{i}" for i in range(c)])


@pytest.fixture
def store(tmp_path):
    return ProjectStore.create(tmp_path / "p.zarr", classes=make_classes(["a", "b", "c"]))


def test_create_open_and_ngff_layout(store, rng, tmp_path):
    r = _raster(rng)
    info = add_image(store, r, "img1")
    assert info.shape == (4, 40, 50) and info.band_names == ["b0", "b1", "b2", "b3"]
    reopened = ProjectStore.open(tmp_path / "p.zarr")
    assert reopened.image_names() == ["img1"]
    np.testing.assert_array_equal(reopened.image("img1")[...], r.data)
    assert [c.name for c in reopened.classes] == ["a", "b", "c"]
    # OME-Zarr 0.5: an image group with a channel axis and band names, labels as a labels group.
    img = zarr.open_group(str(tmp_path / "p.zarr/images/img1"), mode="r")
    ome = dict(img.attrs)["ome"]
    assert ome["version"] == "0.5"
    assert [a["name"] for a in ome["multiscales"][0]["axes"]] == ["c", "y", "x"]
    assert [c["label"] for c in ome["omero"]["channels"]] == ["b0", "b1", "b2", "b3"]
    assert dict(img["labels"].attrs)["ome"]["labels"] == ["annotations"]
    label_meta = dict(img["labels/annotations"].attrs)["ome"]["image-label"]
    assert [p["class"] for p in label_meta["properties"]] == ["a", "b", "c"]
    assert img["labels/annotations/0"].shape == (40, 50)
    # robust per-band statistics
    st = info.bands[0].stats
    assert st is not None and st.p1 < st.p50 < st.p99 and st.valid_pixels == 40 * 50


def test_not_a_store_and_newer_schema(tmp_path, store, rng):
    with pytest.raises(StoreError, match="not a napari-hitl project store"):
        ProjectStore.open(tmp_path / "nothing.zarr")
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    with pytest.raises(StoreError, match="not a napari-hitl project store"):
        ProjectStore.open(tmp_path / "plain.zarr")
    add_image(store, _raster(rng), "x")
    meta_path = store.path / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["napari_hitl"]["schema_version"] = 99
    meta_path.write_text(json.dumps(meta))
    before = snapshot(store.path)
    with pytest.raises(SchemaVersionError, match=r"schema 99.*Upgrade napari-hitl"):
        ProjectStore.open(store.path, mode="a")
    assert snapshot(store.path) == before


def test_nan_and_nodata_are_masked_not_lost(store, rng):
    data = rng.random((3, 20, 20)).astype(np.float32)
    data[0, 2, 3] = np.nan
    data[1, 5, 5] = np.inf
    data[:, 10, 10] = -9999
    info = add_image(store, Raster(data, "CYX", ["x", "y", "z"], nodata=-9999), "n")
    assert info.invalid_pixels == 3
    valid = store.valid_mask("n")
    assert not valid[2, 3] and not valid[5, 5] and not valid[10, 10] and valid.sum() == 397
    np.testing.assert_array_equal(store.image("n")[...], data)  # data kept exactly (NaN too)
    assert np.isfinite(info.bands[0].stats.p99)


def test_labels_import_adds_classes_and_provenance(store, rng):
    labels = np.zeros((40, 50), np.uint8)
    labels[:5] = 1
    labels[-5:] = 7
    add_image(store, _raster(rng), "img", labels=labels)
    assert [c.value for c in store.classes] == [1, 2, 3, 7]
    assert store.classes[-1].name == "class 7"
    np.testing.assert_array_equal(store.labels("img"), labels)
    np.testing.assert_array_equal(store.provenance("img"), (labels > 0) * PROVENANCE_HUMAN)


def test_write_labels_validates(store, rng):
    add_image(store, _raster(rng), "img")
    with pytest.raises(ValueError, match=r"values \[9\] have no class"):
        store.write_labels("img", np.full((40, 50), 9, np.uint8))
    with pytest.raises(ValueError, match="shape"):
        store.write_labels("img", np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError, match=r"0\.\.65535"):
        store.write_labels("img", np.full((40, 50), -1, np.int32))
    assert not store.labels("img").any()


def test_human_edit_on_machine_pixel_makes_it_human(store, rng):
    add_image(store, _raster(rng), "img")
    labels = np.zeros((40, 50), np.uint16)
    labels[0, :10] = 1
    prov = np.zeros_like(labels)
    prov[0, :10] = machine_provenance(2)
    store.write_labels("img", labels, prov)
    edited = labels.copy()
    edited[0, 0] = 2  # relabel a machine pixel
    edited[0, 1] = 0  # erase one
    edited[5, 5] = 3  # paint a new one
    assert store.save_edited_labels("img", edited) == 3
    p = store.provenance("img")
    assert p[0, 0] == PROVENANCE_HUMAN and p[0, 1] == 0 and p[5, 5] == PROVENANCE_HUMAN
    assert (p[0, 2:10] == machine_provenance(2)).all()


def test_derived_arrays_refused_when_stale(store, rng):
    add_image(store, _raster(rng), "img")
    conf = rng.random((40, 50)).astype(np.float32)
    store.write_derived("img", "confidence", conf, store.signature("img", model="m1"))
    np.testing.assert_array_equal(store.read_derived("img", "confidence", {"model": "m1"}), conf)
    with pytest.raises(StaleDataError, match="model"):
        store.read_derived("img", "confidence", {"model": "m2"})
    add_image(store, _raster(np.random.default_rng(5)), "img", overwrite=True)  # new pixels
    with pytest.raises(StoreError, match="no 'confidence'"):  # derived data went with the image
        store.read_derived("img", "confidence")
    store.write_derived("img", "confidence", conf)
    sig_path = store.path / "images/img/hitl/confidence/zarr.json"
    meta = json.loads(sig_path.read_text())
    meta["attributes"]["napari_hitl"]["signature"]["source_hash"] = "0" * 32
    sig_path.write_text(json.dumps(meta))
    with pytest.raises(StaleDataError, match="source_hash"):
        store.read_derived("img", "confidence")


def test_failure_mid_import_leaves_store_exactly_as_it_was(store, rng, monkeypatch):
    add_image(store, _raster(rng), "keep", labels=np.ones((40, 50), np.uint8))
    before = snapshot(store.path)
    calls = {"n": 0}
    real = store_staging.invalid_mask

    def failing(block, nodata):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full (injected)")
        return real(block, nodata)

    monkeypatch.setattr(store_pyramid, "TILE", 16)  # several tiles, fail on the second
    monkeypatch.setattr(store_staging, "invalid_mask", failing)
    with pytest.raises(OSError, match="injected"):
        add_image(store, _raster(rng), "new")
    calls["n"] = 0
    with pytest.raises(OSError, match="injected"):  # replacing an image fails just as safely
        add_image(store, _raster(rng), "keep", overwrite=True)
    assert snapshot(store.path) == before
    reopened = ProjectStore.open(store.path)
    assert reopened.image_names() == ["keep"]
    assert reopened.labels("keep").all()


def test_cancel_leaves_store_unchanged(store, rng, monkeypatch):
    monkeypatch.setattr(store_pyramid, "TILE", 16)
    before = snapshot(store.path)
    token = CancelToken()
    job = import_raster(store, _raster(rng), "c", cancel=token)
    next(job)
    token.cancel()
    with pytest.raises(Cancelled):
        run_to_end(job)
    assert snapshot(store.path) == before
    assert "c" not in store


def test_corrupt_pixels_found_at_import_name_the_file(store, tmp_path, rng):
    p = write_geotiff(
        tmp_path / "t.tif", rng.integers(0, 99, (3, 300, 300)).astype(np.uint16), ["a", "b", "c"]
    )
    raster = read_raster(p)
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) // 3])
    before = snapshot(store.path)
    with pytest.raises(InputFileError, match=r"t\.tif: cannot read the pixel data"):
        add_image(store, raster, "t")
    assert snapshot(store.path) == before


def test_stack_image_and_remove(store, rng):
    data = rng.random((2, 3, 16, 16)).astype(np.float32)
    info = add_image(store, Raster(data, "CZYX", ["a", "b"]), "vol")
    assert info.spatial_shape == (3, 16, 16)
    assert store.labels("vol").shape == (3, 16, 16)
    store.write_labels("vol", np.ones((3, 16, 16), np.uint8))
    store.remove_image("vol")
    assert store.image_names() == []
    with pytest.raises(StoreError, match="has no image 'vol'"):
        store.image_info("vol")


def test_read_only_store_refuses_writes(store, rng):
    add_image(store, _raster(rng), "img")
    ro = ProjectStore.open(store.path)
    with pytest.raises(StoreError, match="read-only"):
        ro.write_labels("img", np.zeros((40, 50), np.uint8))


def test_name_validation_and_duplicate(store, rng):
    with pytest.raises(ValueError, match="not allowed"):
        add_image(store, _raster(rng), ".hidden")
    add_image(store, _raster(rng), "x")
    with pytest.raises(StoreError, match="already has an image 'x'"):
        add_image(store, _raster(rng), "x")


def test_image_order_is_insertion_order(store, rng):
    for n in ("zeta", "alpha", "mid"):
        add_image(store, _raster(rng, h=8, w=8), n)
    assert store.image_names() == ["zeta", "alpha", "mid"]


def test_tifffile_import_sanity(tmp_path):
    # guards the test helper itself: a written GeoTIFF is a GeoTIFF to tifffile
    p = write_geotiff(tmp_path / "g.tif", np.zeros((2, 4, 4), np.uint8), ["a", "b"])
    with tifffile.TiffFile(p) as t:
        assert t.is_geotiff


def test_set_display_rewrites_rgb_and_height_band_only(store, rng):
    data = (rng.random((5, 16, 20)) * 100).astype(np.float32)
    raster = Raster(data, "CYX", ["B02", "B03", "B04", "B08", "DSM"])
    add_image(store, raster, "img")
    before = store.image_info("img")
    assert before.rgb == (2, 1, 0) and before.dsm_band == 4
    group_json = store.path / "images/img/zarr.json"
    meta = json.loads(group_json.read_text())
    meta["attributes"]["napari_hitl"]["note"] = "kept"  # metadata this version does not know
    meta["attributes"]["custom"] = {"kept": True}
    group_json.write_text(json.dumps(meta))
    store.write_derived("img", "prediction", np.zeros((16, 20), np.uint8))

    info = store.set_display("img", rgb=(3, 2, 1), dsm_band=3)
    assert info.rgb == (3, 2, 1) and info.dsm_band == 3
    reopened = ProjectStore.open(store.path)
    info = reopened.image_info("img")
    assert info.rgb == (3, 2, 1) and info.dsm_band == 3
    assert [b.role for b in info.bands] == ["spectral"] * 3 + ["dsm", "other"]
    attrs = json.loads(group_json.read_text())["attributes"]
    assert attrs["napari_hitl"]["note"] == "kept" and attrs["custom"] == {"kept": True}
    channels = attrs["ome"]["omero"]["channels"]
    assert [c["color"] for c in channels] == ["FFFFFF", "0000FF", "00FF00", "FF0000", "FFFFFF"]
    assert [c["active"] for c in channels] == [False, True, True, True, False]
    # no height band: the band chosen as height gets its spectral role back
    info = store.set_display("img", dsm_band=None)
    assert info.dsm_band is None and info.rgb == (3, 2, 1)
    assert [b.role for b in info.bands] == ["spectral"] * 4 + ["other"]
    assert all(not b.extra for b in info.bands)
    assert store.set_display("img", dsm_band=4).dsm_band == 4  # "keep" leaves it
    assert store.set_display("img", rgb=(0, 1, 2)).dsm_band == 4
    # pixels and derived arrays are untouched, their signatures still hold
    np.testing.assert_array_equal(store.image("img")[...], data)
    assert store.read_derived("img", "prediction").shape == (16, 20)
    with pytest.raises(ValueError, match=r"3 indices in 0\.\.4"):
        store.set_display("img", rgb=(0, 1, 5))
    with pytest.raises(ValueError, match="height band 7"):
        store.set_display("img", dsm_band=7)
    with pytest.raises(StoreError, match="read-only"):
        ProjectStore.open(store.path).set_display("img", rgb=(0, 1, 2))
    with pytest.raises(StoreError, match="has no image"):
        store.set_display("nope", rgb=(0, 1, 2))
