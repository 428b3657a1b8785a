"""The store is valid OME-Zarr 0.5 for an independent validator (ome-zarr-models), for every
kind of image; OME-Zarr images written by other tools import; exports are OME-Zarr too."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import zarr
from ome_zarr_models.v05.bioformats2raw import BioFormats2Raw
from ome_zarr_models.v05.image import Image
from ome_zarr_models.v05.image_label import ImageLabel

from napari_hitl.cli import main
from napari_hitl.core.errors import InputFileError
from napari_hitl.core.io.export import export_item, write_raster
from napari_hitl.core.io.rasters import Raster, read_mask, read_raster
from napari_hitl.core.store import ProjectStore, add_image, level_shape

KINDS = {  # name: (channel-first axes, shape, pyramid)
    "plain": ("CYX", (3, 64, 80), None),
    "pyramid": ("CYX", (2, 300, 260), True),
    "z": ("CZYX", (2, 4, 64, 48), None),
    "t": ("CTYX", (2, 3, 64, 48), None),
}


def _store(tmp_path, rng, kind):
    axes, shape, pyramid = KINDS[kind]
    data = rng.random(shape, dtype=np.float32)
    labels = np.zeros(shape[1:], np.uint16)
    labels[..., :6, :6] = 1
    labels[..., -7:, -5:] = 2
    store = ProjectStore.create(tmp_path / f"{kind}.zarr")
    raster = Raster(data, axes, [f"b{i}" for i in range(shape[0])])
    add_image(store, raster, "img", labels=labels, pyramid=pyramid)
    return store, data, labels


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_store_kind_validates_as_ome_zarr_05(tmp_path, rng, kind):
    store, data, labels = _store(tmp_path, rng, kind)
    group = zarr.open_group(str(store.path / "images" / "img"), mode="r")
    image = Image.from_zarr(group)  # validates the labels group under it too
    axes = [a.name for a in image.ome_attributes.multiscales[0].axes]
    assert axes[0] == "t" if kind == "t" else axes[0] == "c"
    assert axes[-2:] == ["y", "x"]
    ImageLabel.from_zarr(group["labels/annotations"])
    BioFormats2Raw.from_zarr(zarr.open_group(str(store.path), mode="r"))
    series = json.loads((store.path / "OME" / "zarr.json").read_text())["attributes"]["ome"]
    assert series["series"] == ["images/img"]
    # napari-hitl still reads the image channel first, whatever the order on disk
    np.testing.assert_array_equal(np.asarray(store.image("img")[...]), data)
    np.testing.assert_array_equal(np.asarray(store.image_dask("img")), data)
    n_levels = len(store.image_levels("img"))
    assert store.label_level_count("img") == n_levels
    for k in range(n_levels):
        level = np.asarray(group[f"labels/annotations/{k}"][...])
        assert level.shape == level_shape(labels.shape, k)
        np.testing.assert_array_equal(level, labels[..., :: 2**k, :: 2**k])


def test_label_levels_follow_every_label_change(tmp_path, rng):
    store, _data, labels = _store(tmp_path, rng, "pyramid")
    store = ProjectStore.open(store.path, mode="a")
    new = labels.copy()
    new[100:140, 30:90] = 2
    new[:6, :6] = 0
    store.write_labels("img", new)
    group = zarr.open_group(str(store.path / "images" / "img" / "labels" / "annotations"))
    for k in range(store.label_level_count("img")):
        np.testing.assert_array_equal(np.asarray(group[str(k)][...]), new[:: 2**k, :: 2**k])


def test_time_stack_view_reads_and_indexes_channel_first(tmp_path, rng):
    store, data, _labels = _store(tmp_path, rng, "t")
    on_disk = zarr.open_array(str(store.path / "images" / "img" / "0"), mode="r")
    assert on_disk.shape == (3, 2, 64, 48)  # t, c, y, x as NGFF requires
    assert tuple(on_disk.metadata.dimension_names) == ("t", "c", "y", "x")
    view = store.image("img")
    assert view.shape == data.shape and view.ndim == 4
    np.testing.assert_array_equal(view[:, 1], data[:, 1])
    np.testing.assert_array_equal(view[1, 2, 5:9], data[1, 2, 5:9])
    np.testing.assert_array_equal(view.oindex[np.array([1, 0]), 2], data[[1, 0], 2])


def test_old_layout_without_dimension_names_still_reads(tmp_path, rng):
    """Stores written before NGFF 0.5 order (C, T, Y, X on disk, no dimension_names) read as
    they are."""
    store, data, _labels = _store(tmp_path, rng, "t")
    path = store.path / "images" / "img" / "0"
    old = zarr.create_array(str(tmp_path / "old"), shape=data.shape, dtype=data.dtype)
    old[...] = data
    shutil.rmtree(path)
    shutil.copytree(tmp_path / "old", path)
    np.testing.assert_array_equal(np.asarray(ProjectStore.open(store.path).image("img")[...]), data)


def _foreign_ome_zarr_v04(path, data):
    """An OME-Zarr 0.4 image (zarr v2) as bioformats2raw/ome-zarr-py write them: t,c,z,y,x with
    singleton t and z, channel labels in omero."""
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    arr = group.create_array("0", shape=(1, data.shape[0], 1, *data.shape[1:]), dtype=data.dtype)
    arr[...] = data[None, :, None]
    group.attrs.update(
        {
            "multiscales": [
                {
                    "version": "0.4",
                    "axes": [
                        {"name": "t", "type": "time"},
                        {"name": "c", "type": "channel"},
                        {"name": "z", "type": "space"},
                        {"name": "y", "type": "space", "unit": "micrometer"},
                        {"name": "x", "type": "space", "unit": "micrometer"},
                    ],
                    "datasets": [
                        {
                            "path": "0",
                            "coordinateTransformations": [
                                {"type": "scale", "scale": [1, 1, 1, 0.5, 0.5]}
                            ],
                        }
                    ],
                }
            ],
            "omero": {"channels": [{"label": "DAPI"}, {"label": "GFP"}]},
        }
    )
    return path


def test_import_an_ome_zarr_written_by_another_tool(tmp_path, rng, capsys):
    data = rng.integers(0, 4000, (2, 40, 30)).astype(np.uint16)
    src = _foreign_ome_zarr_v04(tmp_path / "cells.ome.zarr", data)
    raster = read_raster(src)
    assert raster.axes == "CYX" and raster.band_names == ["DAPI", "GFP"]
    store = tmp_path / "p.zarr"
    assert main(["import", str(store), str(src), "--name", "cells"]) == 0
    np.testing.assert_array_equal(np.asarray(ProjectStore.open(store).image("cells")[...]), data)


def test_store_images_and_their_labels_import_into_another_project(tmp_path, rng):
    store, data, labels = _store(tmp_path, rng, "t")
    image = store.path / "images" / "img"
    raster = read_raster(image)
    assert raster.axes == "CTYX" and raster.band_names == ["b0", "b1"]
    other = ProjectStore.create(tmp_path / "other.zarr")
    mask = read_mask(image / "labels" / "annotations", shape=labels.shape)
    add_image(other, raster, "copy", labels=mask)
    np.testing.assert_array_equal(np.asarray(other.image("copy")[...]), data)
    np.testing.assert_array_equal(other.labels("copy"), labels)


def test_collections_and_stores_name_what_to_import(tmp_path, rng, capsys):
    store, _data, _labels = _store(tmp_path, rng, "plain")
    with pytest.raises(InputFileError, match="project store; import one of its images"):
        read_raster(store.path)
    root = zarr.open_group(str(tmp_path / "two.zarr"), mode="w", zarr_format=3)
    root.attrs.update({"ome": {"version": "0.5", "bioformats2raw.layout": 3}})
    for i in range(2):  # two OME-Zarr 0.5 images at 0/ and 1/, as bioformats2raw numbers them
        write_raster(tmp_path / f"{i}.zarr", rng.random((2, 8, 8)).astype(np.float32))
        shutil.move(tmp_path / f"{i}.zarr", tmp_path / "two.zarr" / str(i))
    with pytest.raises(InputFileError, match=r"collection of 2 images.*two.zarr/0"):
        read_raster(tmp_path / "two.zarr")
    assert main(["import", str(tmp_path / "p.zarr"), str(tmp_path / "two.zarr")]) == 2
    assert "collection of 2 images" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["plain", "t"])
def test_zarr_exports_are_ome_zarr_and_read_back(tmp_path, rng, kind):
    store, data, labels = _store(tmp_path, rng, kind)
    out = export_item(store, "img", "image", tmp_path / "image.zarr")
    Image.from_zarr(zarr.open_group(str(out), mode="r"))
    back = read_raster(out)
    assert back.axes == KINDS[kind][0] and back.band_names == ["b0", "b1", "b2"][: data.shape[0]]
    np.testing.assert_array_equal(np.asarray(back.data), data)
    out = export_item(store, "img", "labels", tmp_path / "labels.zarr")
    label_group = zarr.open_group(str(out), mode="r")
    ImageLabel.from_zarr(label_group)
    colors = dict(label_group.attrs)["ome"]["image-label"]["colors"]
    assert [c["label-value"] for c in colors] == [c.value for c in store.classes]
    np.testing.assert_array_equal(read_mask(out, shape=labels.shape), labels)


def test_check_finds_and_repairs_a_stale_label_level(tmp_path, rng, capsys):
    store, _data, labels = _store(tmp_path, rng, "pyramid")
    level1 = zarr.open_array(str(store.path / "images/img/labels/annotations/1"), mode="r+")
    level1[:5, :5] = 2  # as a crash between two writes of an older version could leave it
    assert main(["check", str(store.path)]) == 1
    assert "label pyramid level(s) [1] differ" in capsys.readouterr().out
    assert main(["check", str(store.path), "--repair"]) == 0
    np.testing.assert_array_equal(level1[...], labels[::2, ::2])
    np.testing.assert_array_equal(ProjectStore.open(store.path).labels("img"), labels)
