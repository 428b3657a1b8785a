"""The Project dock widget: open or create a project store, import images (in a worker thread,
with progress and Cancel), move between images, save labels, edit the classes, choose the
displayed bands, and see what the store holds."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
)

from napari_hitl._napari.layers import META, direct_colormap, save_layer_labels
from napari_hitl._napari.names import labels_name
from napari_hitl._napari.shortcuts import PROJECT_SHORTCUTS
from napari_hitl._napari.view import show_store_image
from napari_hitl._qt.controls import job_progress, label
from napari_hitl._qt.dock import DockWidget
from napari_hitl._qt.jobs import JobRunner
from napari_hitl._qt.project.band_panel import BandPanel
from napari_hitl._qt.project.class_editor import ClassEditor
from napari_hitl.core.errors import HitlError
from napari_hitl.core.io.rasters import read_raster
from napari_hitl.core.progress import CancelToken, Progress
from napari_hitl.core.store import ProjectStore, human_labeled_pixels, import_raster

if TYPE_CHECKING:
    import napari


class ProjectWidget(DockWidget):
    """Open a project store and navigate its images (previous / next, "n of N")."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.store: ProjectStore | None = None
        self.index = 0

        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("project.zarr")
        self.open_button = QPushButton("Open…")
        self.new_button = QPushButton("New…")
        self.import_button = QPushButton("Import images…")
        self.prev_button = QPushButton("◀ Previous")
        self.next_button = QPushButton("Next ▶")
        self.position_label = QLabel("no project")
        self.position_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.save_button = QPushButton("Save labels")
        self.info_label = label()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the import after the file being written")
        self.progress = job_progress()
        self.jobs = JobRunner(self.progress)
        self.status = label(plain=True)
        self.class_editor = ClassEditor(self.viewer)
        self.band_panel = BandPanel(self.viewer)
        for b, tip in (
            (self.prev_button, "Previous image (saves the labels first) — Alt-P"),
            (self.next_button, "Next image (saves the labels first) — Alt-N"),
            (self.save_button, "Write the labels layer into the project store"),
        ):
            b.setToolTip(tip)

        row = QHBoxLayout()
        row.addWidget(self.path_edit)
        row.addWidget(self.open_button)
        row.addWidget(self.new_button)
        nav = QHBoxLayout()
        nav.addWidget(self.prev_button)
        nav.addWidget(self.position_label)
        nav.addWidget(self.next_button)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        imp = QHBoxLayout()
        imp.addWidget(self.import_button)
        imp.addWidget(self.cancel_button)
        layout.addLayout(imp)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addLayout(nav)
        layout.addWidget(self.save_button)
        layout.addWidget(QLabel("<b>Bands shown</b>"))
        layout.addWidget(self.band_panel)
        layout.addWidget(QLabel("<b>Classes</b>"))
        layout.addWidget(self.class_editor)
        layout.addWidget(self.info_label)
        layout.addStretch(1)

        self.open_button.clicked.connect(self._ask_open)
        self.new_button.clicked.connect(self._ask_new)
        self.import_button.clicked.connect(self._ask_import)
        self.prev_button.clicked.connect(lambda: self.go_to(self.index - 1))
        self.next_button.clicked.connect(lambda: self.go_to(self.index + 1))
        self.save_button.clicked.connect(self.save_labels)
        self.band_panel.display_changed.connect(lambda _image: self._refresh())
        self.cancel_button.clicked.connect(self.jobs.cancel)
        self.jobs.finished.connect(lambda _name: self._after_import())
        self.jobs.cancelled.connect(
            lambda _name: self.status.setText(
                f"import cancelled; the project holds {_count(len(self.image_names()), 'image')}"
            )
        )
        self.connect_jobs(
            {
                "Alt-N": lambda: self.go_to(self.index + 1),
                "Alt-P": lambda: self.go_to(self.index - 1),
            },
            PROJECT_SHORTCUTS,
        )
        # another widget (the queue) may show another image: follow it
        self.viewer.layers.selection.events.active.connect(self._active_changed)
        self._adopt_store_from_layers()
        self._refresh()

    # -------------------------------------------------------------- actions
    def open_store(self, path: str | Path, create: bool = False) -> None:
        """Open (or create) a project store and show its first image."""
        try:
            self.store = (
                ProjectStore.create(path, exist_ok=True) if create else ProjectStore.open(path, "a")
            )
        except HitlError as exc:
            self.show_error(exc)
            return
        self.path_edit.setText(str(self.store.path))
        self.index = 0
        if self.store.image_names():
            self.show_image(0)
        self._refresh()

    def image_names(self) -> list[str]:
        """Images of the open store (empty without one)."""
        return self.store.image_names() if self.store else []

    def current_image(self) -> str | None:
        """Name of the image on show."""
        names = self.image_names()
        return names[self.index] if names else None

    def go_to(self, index: int) -> None:
        """Save the current labels, then show image ``index`` (clamped to the valid range)."""
        names = self.image_names()
        if not names:
            return
        index = max(0, min(index, len(names) - 1))
        if index == self.index and self._layers_of(names[index]):
            return
        self.save_labels()
        self.show_image(index)

    def show_image(self, index: int) -> None:
        """Show image ``index``'s layers (added once, then reused by name); hide the others."""
        assert self.store is not None
        self.index = index
        show_store_image(self.viewer, self.store, self.image_names()[index])
        self._refresh()

    def save_labels(self) -> int:
        """Write the current image's labels layer into the store; returns changed pixels."""
        name = self.current_image()
        lab = self._labels_layer(name) if name else None
        if self.store is None or lab is None or name is None:
            return 0
        try:
            changed = save_layer_labels(self.store, lab)
        except (HitlError, ValueError) as exc:
            self.show_error(exc)
            return 0
        self._refresh()
        return changed

    def import_files(self, paths: list[str]) -> bool:
        """Import files into the open store in a worker thread (progress bar, Cancel stops
        after the file being written); returns whether the import started."""
        if self.store is None:
            self.show_error(HitlError("open or create a project first"))
            return False
        store = self.store

        def job(token: CancelToken) -> Generator[Progress, None, int]:
            for i, p in enumerate(paths, 1):
                token.raise_if_cancelled()
                raster = read_raster(p)
                name = free_import_name(store, Path(p).stem)
                for step in import_raster(
                    store, raster, name, overwrite=True, discard_labels=False, cancel=token
                ):
                    yield Progress(step.done, step.total, f"{name} ({i}/{len(paths)})")
            return len(paths)

        def done(n: int) -> None:
            self.status.setText(f"imported {_count(n, 'file')}")

        self.status.setText("")
        return self.jobs.start("Import", job, done)

    # ------------------------------------------------------------- helpers
    def _set_busy(self, busy: bool) -> None:
        self.cancel_button.setEnabled(busy)
        self._refresh()

    def _after_import(self) -> None:
        """Show what the import added (also after a cancel or a failure: the files written
        before it stay)."""
        if self.store is not None and self.image_names():
            self.show_image(min(self.index, len(self.image_names()) - 1))
        self._refresh()

    def _layers_of(self, name: str) -> list[Any]:
        if self.store is None:
            return []
        return [
            layer
            for layer in self.viewer.layers
            if layer.metadata.get(META, {}).get("store") == str(self.store.path)
            and layer.metadata.get(META, {}).get("image") == name
        ]

    def _labels_layer(self, name: str) -> Any:
        for layer in self.viewer.layers:
            if layer.name == labels_name(name):
                return layer
        return None

    def _adopt_store_from_layers(self) -> None:
        """If layers from a store are open already (sample data, reader), attach to that store."""
        for layer in self.viewer.layers:
            meta = layer.metadata.get(META, {})
            if meta.get("store"):
                try:
                    self.store = ProjectStore.open(meta["store"], "a")
                except HitlError:
                    continue
                names = self.store.image_names()
                self.index = names.index(meta["image"]) if meta.get("image") in names else 0
                self.path_edit.setText(str(self.store.path))
                return

    def _active_changed(self, event: Any = None) -> None:
        layer = self.viewer.layers.selection.active
        meta = layer.metadata.get(META, {}) if layer is not None else {}
        if self.store is None or meta.get("store") != str(self.store.path):
            return
        names = self.image_names()
        if meta.get("image") in names and names.index(meta["image"]) != self.index:
            self.index = names.index(meta["image"])
            self._refresh()

    def _refresh(self) -> None:
        names = self.image_names()
        has, idle = bool(names), not self.jobs.busy  # an import holds the store
        self.prev_button.setEnabled(has and self.index > 0)
        self.next_button.setEnabled(has and self.index < len(names) - 1)
        self.save_button.setEnabled(has)
        for b in (self.open_button, self.new_button):
            b.setEnabled(idle)
        self.import_button.setEnabled(self.store is not None and idle)
        self.position_label.setText(f"{self.index + 1} of {len(names)}" if has else "no images")
        self.class_editor.set_store(self.store)
        self.band_panel.set_image(self.store, self.current_image())
        if self.store is None:
            self.info_label.setText(
                "Open a project store (.zarr) or create one, then import images."
            )
            return
        name = self.current_image()
        if name is None:
            self.info_label.setText(f"{self.store.path.name}: no images yet")
            return
        info = self.store.image_info(name)
        crs = info.georef.crs if info.georef and info.georef.crs else "no georeferencing"
        self.info_label.setText(
            f"<b>{name}</b>: {info.shape[0]} bands ({', '.join(info.band_names[:6])}"
            f"{'…' if len(info.bands) > 6 else ''}), {'×'.join(map(str, info.spatial_shape))} px, "
            f"{crs}; RGB = bands {', '.join(str(i) for i in info.rgb)}"
            + (
                f"; height band: {info.band_names[info.dsm_band]}"
                if info.dsm_band is not None
                else ""
            )
        )
        lab = self._labels_layer(name)
        if lab is not None:
            lab.colormap = direct_colormap(self.store.classes)

    # -------------------------------------------------------------- dialogs
    def _ask_open(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a napari-hitl project (.zarr)")
        if path:
            self.open_store(path)

    def _ask_new(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "New project", "project.zarr")
        if path:
            self.open_store(path if path.endswith(".zarr") else path + ".zarr", create=True)

    def _ask_import(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(
            self, "Import images", "", "Images (*.tif *.tiff *.png *.jpg *.jpeg *.npy)"
        )
        if paths:
            self.import_files(paths)

    def release(self) -> None:
        """Stop following the viewer's active layer (shortcuts and the job: DockWidget)."""
        self.viewer.layers.selection.events.active.disconnect(self._active_changed)


def _count(n: int, noun: str) -> str:
    """``1 file``, ``2 files``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def free_import_name(store: ProjectStore, stem: str) -> str:
    """``stem``, or ``stem-2``, ``stem-3``… when an image of that name has human labels.

    Importing a file again replaces its image only while nobody has labeled it; otherwise the
    new copy goes beside it, so a re-import never loses a stroke.
    """
    name, k = stem, 1
    while name in store and human_labeled_pixels(store, name) > 0:
        k += 1
        name = f"{stem}-{k}"
    return name
