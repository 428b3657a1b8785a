"""The band panel of the Project widget: which bands make the RGB composite, which is the height.

A choice is saved in the store (:meth:`ProjectStore.set_display`) and shown at once: the
``"<image>"`` composite layer gets new data in place, the ``"<image> height"`` layer is added
or updated by name (and hidden for "none").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QFormLayout, QHBoxLayout, QWidget

from napari_hitl._napari.layers import META, composite_data, height_layer, same_store
from napari_hitl._napari.names import composite_name, height_name, labels_name
from napari_hitl.core.errors import HitlError
from napari_hitl.core.store import ImageInfo

if TYPE_CHECKING:
    import napari

    from napari_hitl.core.store import ProjectStore

NO_HEIGHT = "none"


def _combo(tip: str) -> QComboBox:
    combo = QComboBox()
    combo.setToolTip(tip)
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(4)
    return combo


class BandPanel(QWidget):
    """Three combo boxes (R, G, B) for the composite and one for the height (DSM) band."""

    #: emitted after a choice was saved and shown (argument: the image name)
    display_changed = Signal(str)

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.store: ProjectStore | None = None
        self.image: str | None = None
        self._band_names: list[str] = []

        self.red_combo = _combo("Band shown in red")
        self.green_combo = _combo("Band shown in green")
        self.blue_combo = _combo("Band shown in blue")
        self.height_combo = _combo(
            'Band shown as the "<image> height" layer (terrain colours); "none" hides it'
        )
        rgb_row = QHBoxLayout()
        for combo in self.rgb_combos:
            rgb_row.addWidget(combo)
        layout = QFormLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addRow("R / G / B", rgb_row)
        layout.addRow("Height (DSM)", self.height_combo)

        for combo in self.rgb_combos:
            combo.currentIndexChanged.connect(self._rgb_chosen)
        self.height_combo.currentIndexChanged.connect(self._height_chosen)
        self.set_image(None, None)

    @property
    def rgb_combos(self) -> tuple[QComboBox, QComboBox, QComboBox]:
        """The red, green and blue combo boxes."""
        return self.red_combo, self.green_combo, self.blue_combo

    # ------------------------------------------------------------------ public
    def set_image(self, store: ProjectStore | None, name: str | None) -> None:
        """Show the band choice of image ``name`` of ``store`` (``None``: nothing to choose)."""
        self.store, self.image = store, name
        info = store.image_info(name) if store is not None and name is not None else None
        names = info.band_names if info is not None else []
        combos = (*self.rgb_combos, self.height_combo)
        for combo in combos:
            combo.blockSignals(True)
        if names != self._band_names:
            self._band_names = names
            for combo in self.rgb_combos:
                combo.clear()
                combo.addItems(names)
            self.height_combo.clear()
            self.height_combo.addItems([NO_HEIGHT, *names])
        if info is not None:
            for combo, band in zip(self.rgb_combos, info.rgb, strict=True):
                combo.setCurrentIndex(band)
            self.height_combo.setCurrentIndex(0 if info.dsm_band is None else info.dsm_band + 1)
        for combo in self.rgb_combos:
            combo.setEnabled(info is not None and len(names) >= 3)
        self.height_combo.setEnabled(info is not None)
        for combo in combos:
            combo.blockSignals(False)

    def rgb(self) -> tuple[int, int, int] | None:
        """Band indices of the composite as chosen in the combo boxes."""
        if self.image is None or not self._band_names:
            return None
        r, g, b = (combo.currentIndex() for combo in self.rgb_combos)
        return r, g, b

    def height_band(self) -> int | None:
        """Index of the chosen height band (``None`` for "none")."""
        index = self.height_combo.currentIndex()
        return index - 1 if index > 0 else None

    def _set_display(self, **changes: Any) -> ImageInfo | None:
        """Save display ``changes`` of the shown image in the store; ``None`` (after saying why
        and showing the stored choice again) when they cannot be made."""
        if not self._can_change():
            return None
        assert self.store is not None and self.image is not None
        try:
            return self.store.set_display(self.image, **changes)
        except (HitlError, ValueError) as exc:
            self._notify(str(exc))
            self.set_image(self.store, self.image)
            return None

    def set_rgb(self, rgb: Sequence[int]) -> bool:
        """Make bands ``rgb`` (red, green, blue indices) the composite; saved and shown at once."""
        info = self._set_display(rgb=rgb)
        if info is None:
            return False
        assert self.store is not None and self.image is not None
        layer = self._layer(composite_name(self.image))
        if layer is not None:
            layer.data = composite_data(self.store, self.image, info.rgb)
        self._update_metadata(rgb=list(info.rgb))
        self.set_image(self.store, self.image)
        self.display_changed.emit(self.image)
        return True

    def set_height_band(self, band: int | None) -> bool:
        """Make band ``band`` the height band (``None``: no height band); saved and shown."""
        info = self._set_display(dsm_band=band)
        if info is None:
            return False
        assert self.store is not None and self.image is not None
        self._update_metadata(dsm_band=info.dsm_band)
        if info.dsm_band is None:
            layer = self._layer(height_name(self.image))
            if layer is not None:
                layer.visible = False
        else:
            self.show_height_layer()
        self.set_image(self.store, self.image)
        self.display_changed.emit(self.image)
        return True

    def show_height_layer(self, visible: bool = True) -> Any:
        """Add or update the ``"<image> height"`` layer from the stored height band.

        Returns the layer, or ``None`` when the image has no height band.
        """
        if self.store is None or self.image is None:
            return None
        if self.store.image_info(self.image).dsm_band is None:
            return None
        data, kwargs, _kind = height_layer(self.store, self.image, visible=visible)
        layer = self._layer(kwargs["name"])
        if layer is not None:
            layer.data = data
            layer.contrast_limits_range = kwargs["contrast_limits"]
            layer.contrast_limits = kwargs["contrast_limits"]
            layer.metadata[META].update(kwargs["metadata"][META])
            layer.visible = visible
            return layer
        like = self._layer(labels_name(self.image)) or self._layer(composite_name(self.image))
        if like is not None:
            kwargs.update(scale=like.scale, translate=like.translate)
        layer = self.viewer.add_image(data, **kwargs)
        labels = self._layer(labels_name(self.image))
        if labels is not None:  # under the labels, so that painting stays visible
            layers = self.viewer.layers
            layers.move(layers.index(layer), layers.index(labels))
            layers.selection.active = labels  # keep painting where the person was
        return layer

    # ----------------------------------------------------------------- helpers
    def _can_change(self) -> bool:
        if self.store is None or self.image is None:
            self._notify("open a project with an image first")
            return False
        return True

    def _layer(self, name: str) -> Any:
        layers = self.viewer.layers
        return layers[name] if name in layers else None  # noqa: SIM401 (a LayerList: no .get)

    def _update_metadata(self, **changes: Any) -> None:
        """Keep ``rgb`` / ``dsm_band`` in the metadata of the image's layers in step."""
        assert self.store is not None
        for layer in self.viewer.layers:
            meta = layer.metadata.get(META, {})
            if meta.get("image") == self.image and same_store(meta.get("store"), self.store):
                meta.update(changes)

    def _rgb_chosen(self, _index: int) -> None:
        rgb = self.rgb()
        if rgb is not None:
            self.set_rgb(rgb)

    def _height_chosen(self, _index: int) -> None:
        if self.image is not None:
            self.set_height_band(self.height_band())

    def _notify(self, message: str) -> None:
        from napari.utils.notifications import show_warning

        show_warning(message)
