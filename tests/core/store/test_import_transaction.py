"""Import is one transaction: checked first, written aside, moved into place together.

A failed import leaves the store byte for byte as it was (every file's path and bytes hashed
before and after) and leaves no store behind where there was none; ``--overwrite`` keeps human
labels unless ``--discard-labels`` says to drop them; Z/T stacks import their label masks.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from tests.helpers import snapshot, write_labeled_tiff

from napari_hitl.cli import main
from napari_hitl.core.errors import InputFileError, StoreError
from napari_hitl.core.io.rasters import Raster
from napari_hitl.core.progress import run_to_end
from napari_hitl.core.store import (
    PROVENANCE_HUMAN,
    ImportItem,
    ProjectStore,
    human_labeled_pixels,
    import_rasters,
)
from napari_hitl.core.store import pyramid as store_pyramid
from napari_hitl.core.store import staging as store_staging
from napari_hitl.core.store.classes import make_classes


@pytest.fixture
def files(tmp_path, rng):
    """A good 3-band TIFF, its 2-class mask, and a TIFF whose second half is cut off."""
    write_labeled_tiff(tmp_path, rng)
    big = tmp_path / "big.tif"
    tifffile.imwrite(
        big,
        rng.integers(0, 1000, (3, 512, 512)).astype(np.uint16),
        photometric="minisblack",
        planarconfig="separate",
        tile=(256, 256),
    )
    raw = big.read_bytes()
    (tmp_path / "truncated.tif").write_bytes(raw[: len(raw) // 2])
    return tmp_path


@pytest.fixture
def labeled(files):
    """A store with image ``a`` carrying 200 human-labeled pixels, classes cloud, clear."""
    store = files / "p.zarr"
    rc = main(
        [
            "import",
            str(store),
            str(files / "a.tif"),
            "--labels",
            str(files / "mask.tif"),
            "--classes",
            "cloud,clear",
        ]
    )
    assert rc == 0
    return store


def _entries(folder):
    return sorted(p.name for p in folder.iterdir())


def test_failed_import_leaves_store_byte_identical(files, labeled, capsys):
    before = snapshot(labeled)
    rc = main(["import", str(labeled), str(files / "truncated.tif"), "--classes", "water,land"])
    err = capsys.readouterr().err
    assert rc == 2 and "truncated.tif: cannot read the pixel data" in err
    assert snapshot(labeled) == before  # the class names were not swapped either
    assert [c.name for c in ProjectStore.open(labeled).classes] == ["cloud", "clear"]


def test_failed_multi_image_import_adds_none_of_them(files, labeled, capsys):
    (files / "b.tif").write_bytes((files / "a.tif").read_bytes())
    before = snapshot(labeled)
    rc = main(["import", str(labeled), str(files / "b.tif"), str(files / "truncated.tif")])
    assert rc == 2
    assert snapshot(labeled) == before
    assert ProjectStore.open(labeled).image_names() == ["a"]


def test_failed_import_into_new_path_leaves_nothing(files, capsys):
    before = _entries(files)
    target = files / "new" / "deeper" / "p.zarr"
    rc = main(["import", str(target), str(files / "truncated.tif")])
    assert rc == 2
    assert _entries(files) == before  # no store, no hidden staging store, no parent folders


def test_checks_before_writing(files, labeled, capsys):
    before = snapshot(labeled)
    wrong = files / "small.npy"
    np.save(wrong, np.ones((10, 10), np.uint8))
    # label mask of the wrong shape, with new classes: refused before anything changes
    rc = main(
        [
            "import",
            str(labeled),
            str(files / "a.tif"),
            "--name",
            "b",
            "--labels",
            str(wrong),
            "--classes",
            "x,y",
        ]
    )
    assert rc == 2 and "does not match the image's (64, 64)" in capsys.readouterr().err
    # a name taken without --overwrite
    assert main(["import", str(labeled), str(files / "a.tif")]) == 2
    assert "already has an image 'a'" in capsys.readouterr().err
    # two files that would get the same name
    (files / "sub").mkdir()
    (files / "sub" / "a.tif").write_bytes((files / "a.tif").read_bytes())
    assert main(["import", str(labeled), str(files / "a.tif"), str(files / "sub" / "a.tif")]) == 2
    assert "two images would be named 'a'" in capsys.readouterr().err
    # a mask whose values would make more classes than allowed
    many = files / "many.npy"
    np.save(many, np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) % 300)
    assert (
        main(["import", str(labeled), str(files / "a.tif"), "--name", "c", "--labels", str(many)])
        == 2
    )
    assert "at most 255" in capsys.readouterr().err
    assert snapshot(labeled) == before


def test_overwrite_refuses_human_labels_unless_discarded(files, labeled, capsys):
    before = snapshot(labeled)
    rc = main(["import", str(labeled), str(files / "a.tif"), "--overwrite"])
    err = capsys.readouterr().err
    assert rc == 2 and "200 human-labeled pixels" in err and "--discard-labels" in err
    assert len(err.strip().splitlines()) == 1
    assert snapshot(labeled) == before
    assert human_labeled_pixels(ProjectStore.open(labeled), "a") == 200

    rc = main(["import", str(labeled), str(files / "a.tif"), "--overwrite", "--discard-labels"])
    out = capsys.readouterr().out
    assert rc == 0 and "replaced a: discarded 200 human-labeled pixels" in out
    store = ProjectStore.open(labeled)
    assert not store.labels("a").any() and human_labeled_pixels(store, "a") == 0
    # an image without human labels is replaced without --discard-labels
    assert main(["import", str(labeled), str(files / "a.tif"), "--overwrite"]) == 0
    assert "discarded" not in capsys.readouterr().out


def test_discard_labels_needs_overwrite(files, labeled, capsys):
    assert main(["import", str(labeled), str(files / "a.tif"), "--discard-labels"]) == 2
    assert "--discard-labels goes with --overwrite" in capsys.readouterr().err


def test_core_overwrite_refusal_names_the_count(tmp_path, rng):
    store = ProjectStore.create(tmp_path / "p.zarr", classes=make_classes(["a", "b"]))
    data = rng.random((2, 20, 30)).astype(np.float32)
    labels = np.zeros((20, 30), np.uint8)
    labels[:3, :5] = 1
    run_to_end(import_rasters(store, [ImportItem("im", Raster(data, "CYX", ["x", "y"]), labels)]))
    before = snapshot(store.path)
    with pytest.raises(StoreError, match="15 human-labeled pixels"):
        run_to_end(
            import_rasters(
                store, [ImportItem("im", Raster(data, "CYX", ["x", "y"]))], overwrite=True
            )
        )
    assert snapshot(store.path) == before
    result = run_to_end(
        import_rasters(
            store,
            [ImportItem("im", Raster(data, "CYX", ["x", "y"]))],
            overwrite=True,
            discard_labels=True,
        )
    )
    assert result.discarded == {"im": 15} and not result.created


def test_failure_while_committing_rolls_back(files, labeled, monkeypatch):
    store = ProjectStore.open(labeled, "a")
    before = snapshot(labeled)
    data = np.ones((2, 64, 64), np.float32)
    items = [
        ImportItem("a", Raster(data, "CYX", ["x", "y"])),  # replaces a (labels discarded)
        ImportItem("b", Raster(data, "CYX", ["x", "y"]), np.full((64, 64), 3, np.uint8)),
    ]

    def failing(**changes):
        raise OSError(28, "No space left on device (injected)")

    monkeypatch.setattr(store, "_set_attrs", failing)
    with pytest.raises(OSError, match="injected"):
        run_to_end(import_rasters(store, items, overwrite=True, discard_labels=True))
    assert snapshot(labeled) == before


def test_ctrl_c_mid_import_changes_nothing(files, labeled, monkeypatch, capsys):
    before = snapshot(labeled)
    calls = {"n": 0}
    real = store_staging.invalid_mask

    def interrupted(block, nodata):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(block, nodata)

    monkeypatch.setattr(store_pyramid, "TILE", 16)
    monkeypatch.setattr(store_staging, "invalid_mask", interrupted)
    rc = main(["import", str(labeled), str(files / "a.tif"), "--name", "b", "--classes", "u,v"])
    assert rc == 130
    err = capsys.readouterr().err.strip().splitlines()  # progress lines, then the one error
    assert err[-1] == "napari-hitl import: interrupted"
    assert all(line.startswith("[") for line in err[:-1]) and "Traceback" not in "".join(err)
    assert snapshot(labeled) == before


def test_zyx_label_mask_imports_for_a_stack(tmp_path, rng, capsys):
    stack = rng.random((4, 32, 40)).astype(np.float32)
    np.save(tmp_path / "vol.npy", stack)
    mask = np.zeros((4, 32, 40), np.uint8)
    mask[1, :5, :5] = 1
    mask[3, 10:20, 10:20] = 2
    np.save(tmp_path / "vol_mask.npy", mask)
    store = tmp_path / "p.zarr"
    rc = main(
        [
            "import",
            str(store),
            str(tmp_path / "vol.npy"),
            "--axes",
            "ZYX",
            "--labels",
            str(tmp_path / "vol_mask.npy"),
            "--classes",
            "cell,background",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    s = ProjectStore.open(store)
    np.testing.assert_array_equal(s.labels("vol"), mask)
    np.testing.assert_array_equal(s.provenance("vol"), (mask > 0) * PROVENANCE_HUMAN)
    ann = s.labels_array("vol")
    assert ann.shape == (4, 32, 40)


def test_tyx_label_mask_from_multipage_tiff(tmp_path, rng, capsys):
    series = rng.integers(0, 500, (3, 24, 30)).astype(np.uint16)
    np.save(tmp_path / "series.npy", series)
    mask = np.zeros((3, 24, 30), np.uint8)
    mask[0, :4, :4] = 1
    mask[2, -4:, -4:] = 2
    tifffile.imwrite(tmp_path / "series_mask.tif", mask, photometric="minisblack")  # 3 pages
    store = tmp_path / "p.zarr"
    rc = main(
        [
            "import",
            str(store),
            str(tmp_path / "series.npy"),
            "--axes",
            "TYX",
            "--labels",
            str(tmp_path / "series_mask.tif"),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    s = ProjectStore.open(store)
    np.testing.assert_array_equal(s.labels("series"), mask)
    axes = s._image_group("series")["labels/annotations"].attrs["ome"]["multiscales"][0]["axes"]
    assert [a["name"] for a in axes] == ["t", "y", "x"] and axes[0]["type"] == "time"


def test_stack_mask_of_the_wrong_shape_says_so(tmp_path, rng, capsys):
    np.save(tmp_path / "vol.npy", rng.random((4, 32, 40)).astype(np.float32))
    np.save(tmp_path / "m.npy", np.zeros((3, 32, 40), np.uint8))
    rc = main(
        ["import", str(tmp_path / "p.zarr"), str(tmp_path / "vol.npy"), "--axes", "ZYX",
         "--labels", str(tmp_path / "m.npy")]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "(4, 32, 40)" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "p.zarr").exists()


def test_core_label_check_names_the_source(tmp_path, rng):
    raster = Raster(rng.random((1, 8, 8)).astype(np.float32), "CYX", ["x"], sources=["src.tif"])
    with pytest.raises(InputFileError, match=r"src\.tif"):
        run_to_end(
            import_rasters(tmp_path / "p.zarr", [ImportItem("x", raster, np.zeros((4, 4), int))])
        )
    assert not (tmp_path / "p.zarr").exists()
    result = run_to_end(import_rasters(tmp_path / "p.zarr", [ImportItem("x", raster)]))
    assert result.created and result.store.image_names() == ["x"]
