"""The Project widget, loaded through the manifest in a real (Xvfb) napari viewer."""

from __future__ import annotations

import numpy as np
import pytest

from napari_hitl.core.io.rasters import Raster
from napari_hitl.core.store import PROVENANCE_HUMAN, ProjectStore, add_image, machine_provenance
from napari_hitl.core.store.classes import make_classes

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
    monkeypatch.setattr(w, "show_error", lambda exc: shown.append(str(exc)))
    viewer.layers["first labels"].data[0, 0] = 9
    assert w.save_labels() == 0
    assert shown and "have no class" in shown[0]
    assert not ProjectStore.open(two_image_store.path).labels("first").any()


def test_import_runs_in_a_worker(make_napari_viewer, tmp_path, qtbot):
    np.save(tmp_path / "extra.npy", np.random.default_rng(2).random((3, 24, 24)).astype(np.float32))
    viewer = make_napari_viewer()
    w = _widget(viewer)
    w.open_store(tmp_path / "new.zarr", create=True)
    assert w.import_files([str(tmp_path / "extra.npy")])
    assert not w.import_button.isEnabled() and w.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: not w.jobs.busy, timeout=20000)
    assert w.import_button.isEnabled() and not w.cancel_button.isEnabled()
    assert w.status.text() == "imported 1 file"
    assert ProjectStore.open(tmp_path / "new.zarr").image_names() == ["extra"]
    assert "extra labels" in [ly.name for ly in viewer.layers]
    assert w.position_label.text() == "1 of 1"
    # importing the file again after someone labeled it puts the new copy beside it
    store = ProjectStore.open(tmp_path / "new.zarr", "a")
    strokes = np.zeros((24, 24), np.uint16)
    strokes[2:5, 2:9] = 1
    store.ensure_classes([1])
    store.write_labels("extra", strokes)
    w.import_files([str(tmp_path / "extra.npy")])
    qtbot.waitUntil(lambda: not w.jobs.busy, timeout=20000)
    store = ProjectStore.open(tmp_path / "new.zarr")
    assert store.image_names() == ["extra", "extra-2"]
    np.testing.assert_array_equal(store.labels("extra"), strokes)  # not a stroke lost


def test_cancel_stops_an_import_between_files(make_napari_viewer, tmp_path, qtbot, monkeypatch):
    from napari_hitl._qt.project import widget as widget_module
    from napari_hitl.core.store.check import check_store

    rng = np.random.default_rng(3)
    paths = []
    for name in ("a", "b", "c"):
        np.save(tmp_path / f"{name}.npy", rng.random((3, 24, 24)).astype(np.float32))
        paths.append(str(tmp_path / f"{name}.npy"))
    viewer = make_napari_viewer()
    w = _widget(viewer)
    w.open_store(tmp_path / "new.zarr", create=True)
    read, calls = widget_module.read_raster, []

    def read_then_cancel(path):  # the user presses Cancel while the second file is read
        calls.append(path)
        if len(calls) == 2:
            w.cancel_button.click()
        return read(path)

    monkeypatch.setattr(widget_module, "read_raster", read_then_cancel)
    assert w.import_files(paths)
    qtbot.waitUntil(lambda: not w.jobs.busy, timeout=20000)
    store = ProjectStore.open(tmp_path / "new.zarr")
    assert store.image_names() == ["a"]  # the first file whole, the second not begun or undone
    assert len(calls) == 2
    assert check_store(tmp_path / "new.zarr").ok
    assert w.status.text() == "import cancelled; the project holds 1 image"
    assert w.position_label.text() == "1 of 1" and w.import_button.isEnabled()


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


# ------------------------------------------------------------ class editor, band choice
@pytest.fixture
def sample_store(tmp_path):
    from napari_hitl.core.sample.store import build_sample_store

    return build_sample_store(tmp_path / "p.zarr", shape=(96, 96))


def _rgba(hex_color):
    return np.array([int(hex_color[i : i + 2], 16) / 255 for i in (1, 3, 5)] + [1.0])


def _shown_color(layer, value):
    return np.asarray(layer.colormap.map(value)).reshape(-1)[:4]


def _stored(store):
    return {c.value: (c.name, c.color) for c in ProjectStore.open(store.path).classes}


def test_class_editor_add_rename_recolor(make_napari_viewer, sample_store, monkeypatch, qtbot):
    from qtpy.QtGui import QColor
    from qtpy.QtWidgets import QColorDialog

    from napari_hitl._qt.project.class_editor import NAME_COL
    from napari_hitl.core.store.classes import default_color

    viewer = make_napari_viewer()
    w = _widget(viewer)
    w.open_store(sample_store.path)
    editor = w.class_editor
    shown = []
    monkeypatch.setattr(editor, "_notify", shown.append)
    labels = viewer.layers["sample labels"]
    pred = viewer.add_labels(np.zeros((96, 96), np.uint16), name="sample prediction")
    other = viewer.add_labels(np.zeros((96, 96), np.uint16), name="unrelated")
    assert editor.table.rowCount() == 5

    # add: next free value, palette colour, written at once and painted in that colour
    new = editor.add_class()
    assert (new.value, new.name, new.color) == (6, "class 6", default_color(6))
    assert _stored(sample_store)[6] == ("class 6", default_color(6))
    assert editor.table.rowCount() == 6
    for layer in (labels, pred):
        np.testing.assert_allclose(_shown_color(layer, 6), _rgba(default_color(6)), atol=1e-6)
    assert editor.add_class("cloud", "#FFFFFF").value == 7

    # rename in code and by editing the name cell in place
    assert editor.rename_class(6, "  shadow ")
    assert _stored(sample_store)[6][0] == "shadow"
    editor.table.item(0, NAME_COL).setText("trees")
    assert _stored(sample_store)[1][0] == "trees"
    qtbot.waitUntil(lambda: editor.table.item(0, NAME_COL).text() == "trees")
    # duplicate (any case) and empty names are refused with a message, nothing changes
    before = _stored(sample_store)
    assert not editor.rename_class(6, "ROAD")
    assert "already a class named 'road'" in shown[-1]
    assert not editor.rename_class(6, "   ")
    assert "cannot be empty" in shown[-1]
    assert editor.add_class("Shadow") is None and "already a class named 'shadow'" in shown[-1]
    editor.table.item(0, NAME_COL).setText("water")  # typed in the table: refused, put back
    assert "already a class named 'water'" in shown[-1]
    qtbot.waitUntil(lambda: editor.table.item(0, NAME_COL).text() == "trees")
    assert _stored(sample_store) == before

    # recolour, from code and through the colour dialog (not opened: its answer is faked)
    assert editor.set_color(6, "#123456")
    assert _stored(sample_store)[6][1] == "#123456"
    for layer in (labels, pred):
        np.testing.assert_allclose(_shown_color(layer, 6), _rgba("#123456"), atol=1e-6)
    monkeypatch.setattr(QColorDialog, "getColor", lambda *a, **k: QColor("#abcdef"))
    editor.choose_color(2)
    assert _stored(sample_store)[2][1] == "#abcdef"
    np.testing.assert_allclose(_shown_color(labels, 2), _rgba("#abcdef"), atol=1e-6)
    assert not editor.set_color(2, "not a colour") and "not a colour" in shown[-1]
    assert _stored(sample_store)[2][1] == "#abcdef"
    # a layer of no project keeps its own colours
    assert not np.allclose(_shown_color(other, 6), _rgba("#123456"))


def test_class_editor_remove_only_unused(make_napari_viewer, sample_store, monkeypatch):
    viewer = make_napari_viewer()
    w = _widget(viewer)
    w.open_store(sample_store.path)
    editor = w.class_editor
    shown = []
    monkeypatch.setattr(editor, "_notify", shown.append)
    labels = viewer.layers["sample labels"]
    editor.add_class("shadow", "#123456")
    # unsaved paint counts
    labels.data[0:2, 0:2] = 6
    assert not editor.remove_class(6)
    assert "used by the labels of sample (unsaved)" in shown[-1]
    w.save_labels()
    assert not editor.remove_class(6)
    assert "used by the labels of sample;" in shown[-1]
    assert 6 in _stored(sample_store)
    # erased and saved: it goes, and its colour with it
    labels.data[0:2, 0:2] = 0
    w.save_labels()
    assert editor.remove_class(6)
    assert 6 not in _stored(sample_store) and editor.table.rowCount() == 5
    assert _shown_color(labels, 6)[3] == 0  # transparent, like any value without a class
    assert editor.add_class().value == 6  # the value is free again


def test_band_choice_updates_layers_in_place_and_persists(
    make_napari_viewer, sample_store, monkeypatch
):
    from napari_hitl._napari.layers import composite_data

    viewer = make_napari_viewer()
    w = _widget(viewer)
    w.open_store(sample_store.path)
    panel = w.band_panel
    monkeypatch.setattr(panel, "_notify", lambda m: pytest.fail(m))
    info = sample_store.image_info("sample")
    assert info.dsm_band is not None
    assert panel.rgb() == info.rgb and panel.height_band() == info.dsm_band
    composite = viewer.layers["sample"]
    composite.scale = (2.0, 2.0)
    before = np.asarray(composite.data).copy()

    panel.red_combo.setCurrentIndex(7)  # as the user does
    assert viewer.layers["sample"] is composite  # the same layer, new content
    new_rgb = (7, info.rgb[1], info.rgb[2])
    after = np.asarray(composite.data)
    assert not np.allclose(after[..., 0], before[..., 0])
    np.testing.assert_allclose(after[..., 1:], before[..., 1:])
    np.testing.assert_allclose(after, np.asarray(composite_data(sample_store, "sample", new_rgb)))
    assert tuple(composite.scale) == (2.0, 2.0)
    assert composite.metadata["napari_hitl"]["rgb"] == list(new_rgb)
    assert ProjectStore.open(sample_store.path).image_info("sample").rgb == new_rgb
    assert f"RGB = bands {', '.join(map(str, new_rgb))}" in w.info_label.text()

    # a height band: its own layer, under the labels, updated by name
    panel.height_combo.setCurrentIndex(1)  # band 0
    height = viewer.layers["sample height"]
    assert height.visible and height.colormap.name == "gist_earth"
    np.testing.assert_array_equal(np.asarray(height.data), sample_store.image("sample")[0])
    names = [ly.name for ly in viewer.layers]
    assert names.index("sample height") == names.index("sample labels") - 1
    assert viewer.layers.selection.active is viewer.layers["sample labels"]
    assert ProjectStore.open(sample_store.path).image_info("sample").dsm_band == 0
    assert panel.set_height_band(info.dsm_band)
    assert viewer.layers["sample height"] is height
    np.testing.assert_array_equal(
        np.asarray(height.data), sample_store.image("sample")[info.dsm_band]
    )
    # "none": the layer stays, hidden
    panel.height_combo.setCurrentIndex(0)
    assert not height.visible and "sample height" in viewer.layers
    assert ProjectStore.open(sample_store.path).image_info("sample").dsm_band is None

    # reopened, the choice is still there
    w.open_store(sample_store.path)
    assert panel.rgb() == new_rgb and panel.height_band() is None
    assert panel.red_combo.currentText() == info.band_names[7]


def test_height_layer_follows_navigation(make_napari_viewer, two_image_store):
    viewer = make_napari_viewer()
    w = _widget(viewer)
    w.open_store(two_image_store.path)
    assert w.band_panel.height_combo.currentText() == "DSM"  # found by name at import
    assert "first height" not in viewer.layers  # only made when asked for
    w.band_panel.set_height_band(4)
    height = viewer.layers["first height"]
    assert height.visible
    w.save_labels()
    w.show_image(0)  # the same image again (as after an import): stays as it is
    assert height.visible
    w.next_button.click()
    assert not height.visible and w.band_panel.image == "second"
    assert "second height" not in viewer.layers
    w.prev_button.click()
    assert height.visible  # back with its image
    height.visible = False  # hidden by hand: stays hidden across navigation
    w.next_button.click()
    w.prev_button.click()
    assert not height.visible
