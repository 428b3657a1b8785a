"""Imports of the real data sets in ../shared/data (skipped when absent)."""

from __future__ import annotations

import runpy
import sys

import numpy as np
import pytest

from napari_hitl.cli import main
from napari_hitl.core.io.rasters import read_mask
from napari_hitl.core.store import ProjectStore

pytestmark = pytest.mark.realdata
S2 = "B01,B02,B03,B04,B05,B06,B07,B08,B8A,B09,B10,B11,B12"


def test_eolearn_dates_as_images_with_dem(tmp_path, shared_data):
    d = shared_data / "eolearn_slovenia_s2_dem_lulc"
    store = tmp_path / "eo.zarr"
    rc = main(
        [
            "import",
            str(store),
            str(d / "REFERENCE_SCENES.npy"),
            "--axes",
            "TYXC",
            "--split",
            "T",
            "--name",
            "slo",
            "--band-names",
            S2,
            "--bands",
            "B02,B03,B04,B08,B11,B12",
            "--dsm",
            str(d / "DEM.npy"),
            "--dsm-name",
            "DEM",
            "--labels",
            str(d / "LULC.npy"),
        ]
    )
    assert rc == 0
    s = ProjectStore.open(store)
    assert s.image_names() == [f"slo_t{i}" for i in range(5)]
    info = s.image_info("slo_t3")
    assert info.band_names == ["B02", "B03", "B04", "B08", "B11", "B12", "DEM"]
    assert [info.band_names[i] for i in info.rgb] == ["B04", "B03", "B02"]
    assert info.dsm_band == 6 and 600 < info.bands[6].stats.p50 < 850
    scenes = np.load(d / "REFERENCE_SCENES.npy")
    np.testing.assert_array_equal(s.image("slo_t3")[3], scenes[3, ..., 7])  # B08
    np.testing.assert_array_equal(s.labels("slo_t3"), np.load(d / "LULC.npy")[..., 0])
    assert [c.value for c in s.classes] == [1, 2, 3, 4, 8]


def test_38cloud_band_files_stacked_with_recoded_mask(tmp_path, shared_data):
    d = shared_data / "38cloud_sample"
    bands = [str(next(d.glob(f"{b}_patch_*.TIF"))) for b in ("red", "green", "blue", "nir")]
    gt = next(d.glob("gt_patch_*.TIF"))
    store = tmp_path / "c.zarr"
    rc = main(
        [
            "import",
            str(store),
            *bands,
            "--stack",
            "--name",
            "cloud",
            "--labels",
            str(gt),
            "--label-map",
            "0:1,255:2",
            "--classes",
            "clear,cloud",
        ]
    )
    assert rc == 0
    s = ProjectStore.open(store)
    info = s.image_info("cloud")
    assert info.band_names == ["red", "green", "blue", "nir"] and info.rgb == (0, 1, 2)
    raw = read_mask(gt)
    np.testing.assert_array_equal(s.labels("cloud"), np.where(raw == 255, 2, 1))
    assert [c.name for c in s.classes] == ["clear", "cloud"]


def test_houston_example_script(tmp_path, shared_data, monkeypatch):
    mat = shared_data / "houston2018_crop" / "houston_dataset.mat"
    monkeypatch.setattr(sys, "argv", ["x", str(mat), str(tmp_path / "h.zarr")])
    runpy.run_path("examples/houston_hyperspectral.py", run_name="__main__")
    s = ProjectStore.open(tmp_path / "h.zarr")
    assert s.image_info("houston_hs").shape == (48, 128, 128)
    assert s.labels("houston_rgb").max() == 12
