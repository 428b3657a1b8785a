"""The Project widget, loaded through the manifest in a real (Xvfb) napari viewer."""

from __future__ import annotations

import numpy as np
import pytest

from napari_hitl.core.classes import make_classes
from napari_hitl.core.rasters import Raster
from napari_hitl.core.store import PROVENANCE_HUMAN, ProjectStore, add_image, machine_provenance

pytestmark = pytest.mark.gui


@pytest.fixture
def two_image_store(tmp_path):
    store = ProjectStore.create(tmp_path / "p.zarr", classes=make_classes(["veg", "road"]))
    rng = np.random.default_rng(0)
    for name in ("first", "second"):
        add_image(
            store,
            Raster(
                rng.random((5, 32, 40)).astype(np.float32),
                "CYX",
                ["B02", "B03", "B04", "B08", "DSM"],
            ),
            name,
        )
    return store


def _widget(viewer):
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-hitl", "Project")
    return widget


def test_open_navigate_paint_save(make_napari_viewer, two_image_store):
    viewer = make_napari_viewer()
    w = _widget(viewer)
    assert w.position_label.text() == "no images"
    w.open_store(two_image_store.path)
    assert w.position_label.text() == "1 of 2"
    assert not w.prev_button.isEnabled() and w.next_button.isEnabled()
    labels = viewer.layers["first labels"]
    assert viewer.layers["first"].rgb  # composite from B04/B03/B02
    assert viewer.layers["first bands"].data.shape == (5, 32, 40)
    # paint, then move on: the labels are saved with human provenance
    labels.data[3:6, 3:6] = 2
    w.next_button.click()
    assert w.position_label.text() == "2 of 2"
    assert not viewer.layers["first labels"].visible and viewer.layers["second labels"].visible
    store = ProjectStore.open(two_image_store.path)
    assert (store.labels("first")[3:6, 3:6] == 2).all()
    assert (store.provenance("first")[3:6, 3:6] == PROVENANCE_HUMAN).all()
    w.prev_button.click()
    assert w.position_label.text() == "1 of 2" and viewer.layers["first labels"].visible
    assert len([ly for ly in viewer.layers if ly.name == "first labels"]) == 1  # reused by name
    # Alt-N / Alt-P do the same from the keyboard
    from napari.utils.key_bindings import coerce_keybinding

    viewer.keymap[coerce_keybinding("Alt-N")](viewer)
    assert w.position_label.text() == "2 of 2"
    viewer.keymap[coerce_keybinding("Alt-P")](viewer)
    assert w.position_label.text() == "1 of 2"


def test_machine_pixels_stay_machine_until_touched(make_napari_viewer, two_image_store):
    labels = np.zeros((32, 40), np.uint16)
    labels[:2] = 1
    prov = np.where(labels > 0, machine_provenance(1), 0)
    two_image_store.write_labels("first", labels, prov)
    viewer = make_napari_viewer()
    w = _widget(viewer)
    w.open_store(two_image_store.path)
    viewer.layers["first labels"].data[0, 0] = 2
    assert w.save_labels() == 1
    p = ProjectStore.open(two_image_store.path).provenance("first")
    assert p[0, 0] == PROVENANCE_HUMAN and (p[1] == machine_provenance(1)).all()


def test_bad_label_value_is_a_notification_not_a_crash(
    make_napari_viewer, two_image_store, monkeypatch
):
    viewer = make_napari_viewer()
    w = _widget(viewer)
    w.open_store(two_image_store.path)
    shown = []
    monkeypatch.setattr(w, "_notify_error", lambda exc: shown.append(str(exc)))
    viewer.layers["first labels"].data[0, 0] = 9
    assert w.save_labels() == 0
    assert shown and "have no class" in shown[0]
    assert not ProjectStore.open(two_image_store.path).labels("first").any()


def test_import_runs_in_a_worker(make_napari_viewer, tmp_path, qtbot):
    np.save(tmp_path / "extra.npy", np.random.default_rng(2).random((3, 24, 24)).astype(np.float32))
    viewer = make_napari_viewer()
    w = _widget(viewer)
    w.open_store(tmp_path / "new.zarr", create=True)
    worker = w.import_files([str(tmp_path / "extra.npy")])
    qtbot.waitUntil(lambda: w._worker is None, timeout=20000)
    assert worker is not None
    assert ProjectStore.open(tmp_path / "new.zarr").image_names() == ["extra"]
    assert "extra labels" in [ly.name for ly in viewer.layers]
    assert w.position_label.text() == "1 of 1"


def test_sample_data_opens_with_widget(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-hitl", "sample_scene")
    names = [ly.name for ly in viewer.layers]
    assert {"sample", "sample bands", "sample labels", "ground truth"} <= set(names)
    gt = viewer.layers["ground truth"].data
    assert set(np.unique(gt)) == {1, 2, 3, 4, 5}
    w = _widget(viewer)  # adopts the sample's store
    assert w.store is not None and w.current_image() == "sample"
    assert [c.name for c in w.store.classes] == [
        "vegetation",
        "ground",
        "road",
        "building",
        "water",
    ]
