"""The class editor of the Project widget: add, rename, recolour and remove the project's classes.

Every change is written to the store at once and every open Labels layer of the store (its
labels layers and the learning loop's prediction / accepted layers) takes the new colours.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt, QTimer, Signal
from qtpy.QtGui import QColor, QIcon, QPixmap
from qtpy.QtWidgets import (
    QAbstractItemView,
    QColorDialog,
    QHBoxLayout,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_hitl._napari.layers import META, class_layers, recolor_class_layers
from napari_hitl._qt.controls import button
from napari_hitl.core.errors import HitlError
from napari_hitl.core.store.classes import MAX_LABEL_VALUE, ClassInfo, default_color

if TYPE_CHECKING:
    import napari

    from napari_hitl.core.store import ProjectStore

VALUE_COL, COLOR_COL, NAME_COL = 0, 1, 2


def _swatch(color: str) -> QIcon:
    pix = QPixmap(14, 14)
    pix.fill(QColor(color))
    return QIcon(pix)


class ClassEditor(QWidget):
    """A table of the project's classes (value, colour, name) with add / colour / remove buttons.

    Edit a name in place (double-click it), double-click a swatch to pick a colour. The
    methods :meth:`add_class`, :meth:`rename_class`, :meth:`set_color` and
    :meth:`remove_class` do the same from code; each returns whether it changed anything and
    shows a napari notification when it refuses.
    """

    #: emitted after the store's classes changed (argument: the new ``list[ClassInfo]``)
    classes_changed = Signal(list)

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.store: ProjectStore | None = None
        self._shown: tuple[str, list[ClassInfo]] | None = None
        self._in_table_signal = False

        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["Value", "Colour", "Name"])
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(
            QAbstractItemView.EditTrigger.DoubleClicked
            | QAbstractItemView.EditTrigger.EditKeyPressed
        )
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(VALUE_COL, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(COLOR_COL, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(NAME_COL, QHeaderView.ResizeMode.Stretch)
        self.table.setMaximumHeight(160)
        self.table.setToolTip("Double-click a name to rename the class, a swatch to recolour it")
        self.add_button = button("Add class", "Add a class with the next free label value")
        self.color_button = button("Colour…", "Choose the colour of the selected class")
        self.remove_button = button(
            "Remove", "Remove the selected class (only when no image's labels use it)"
        )

        buttons = QHBoxLayout()
        for b in (self.add_button, self.color_button, self.remove_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table)
        layout.addLayout(buttons)

        self.table.itemChanged.connect(self._item_changed)
        self.table.cellDoubleClicked.connect(self._cell_double_clicked)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.add_button.clicked.connect(self._add_clicked)
        self.color_button.clicked.connect(lambda: self.choose_color())
        self.remove_button.clicked.connect(self._remove_clicked)
        self._update_buttons()

    # ------------------------------------------------------------------ public
    def set_store(self, store: ProjectStore | None) -> None:
        """Show (and edit) the classes of ``store``; ``None`` empties the table."""
        self.store = store
        shown = (str(store.path), store.classes) if store is not None else None
        if shown != self._shown:
            self._fill()

    def classes(self) -> list[ClassInfo]:
        """The classes of the store (empty without one)."""
        return self.store.classes if self.store is not None else []

    def selected_value(self) -> int | None:
        """Label value of the selected row, if any."""
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        item = self.table.item(rows[0].row(), VALUE_COL)
        return int(item.data(Qt.ItemDataRole.UserRole)) if item is not None else None

    def add_class(self, name: str | None = None, color: str | None = None) -> ClassInfo | None:
        """Add a class with the next free label value.

        Parameters
        ----------
        name
            Its name; ``"class <value>"`` (made unique) when omitted.
        color
            ``#rrggbb``; the palette colour of the value when omitted.

        Returns
        -------
        ClassInfo or None
            The new class, or ``None`` when refused (no store, bad name or colour).
        """
        if not self._require_store():
            return None
        classes = self.classes()
        value = _next_free_value([c.value for c in classes])
        if value is None:
            self._notify(f"all label values 1..{MAX_LABEL_VALUE} are taken; remove a class first")
            return None
        if name is None:
            taken = {c.name.casefold() for c in classes}
            name, k = f"class {value}", 1
            while name.casefold() in taken:
                k += 1
                name = f"class {value} ({k})"
        checked = self._check_name(name, classes, value)
        if checked is None:
            return None
        hex_color = _normalise_color(color) if color is not None else default_color(value)
        if hex_color is None:
            self._notify(f"{color!r} is not a colour; use '#rrggbb'")
            return None
        new = ClassInfo(value, checked, hex_color)
        return new if self._commit([*classes, new]) else None

    def rename_class(self, value: int, name: str) -> bool:
        """Rename class ``value``; refused (with a notification) when empty or already used."""
        if not self._require_store():
            return False
        classes = self.classes()
        cls = self._find(classes, value)
        checked = self._check_name(name, classes, value) if cls is not None else None
        if cls is None or checked is None:
            return False
        if checked == cls.name:
            return True
        return self._commit([_replace(c, name=checked) if c.value == value else c for c in classes])

    def set_color(self, value: int, color: str) -> bool:
        """Give class ``value`` the colour ``color`` (``#rrggbb`` or any name Qt knows)."""
        if not self._require_store():
            return False
        classes = self.classes()
        cls = self._find(classes, value)
        hex_color = _normalise_color(color)
        if hex_color is None:
            self._notify(f"{color!r} is not a colour; use '#rrggbb'")
            return False
        if cls is None:
            return False
        if hex_color == cls.color:
            return True
        return self._commit(
            [_replace(c, color=hex_color) if c.value == value else c for c in classes]
        )

    def remove_class(self, value: int) -> bool:
        """Remove class ``value`` unless some image's labels use it (then notify which)."""
        if not self._require_store():
            return False
        classes = self.classes()
        cls = self._find(classes, value)
        if cls is None:
            return False
        users = self.images_using(value)
        if users:
            self._notify(
                f"class {value} ({cls.name!r}) is used by the labels of {', '.join(users)}; "
                "erase those pixels (and save) before removing it"
            )
            return False
        return self._commit([c for c in classes if c.value != value])

    def images_using(self, value: int) -> list[str]:
        """Images whose labels hold ``value``: stored labels or unsaved paint in an open layer."""
        if self.store is None:
            return []
        users = [n for n in self.store.image_names() if np.any(self.store.labels(n) == value)]
        for layer in class_layers(self.viewer.layers, self.store):
            meta = layer.metadata.get(META, {})
            image = meta.get("image")
            if (
                meta.get("role") == "labels"
                and image not in users
                and np.any(np.asarray(layer.data) == value)
            ):
                users.append(f"{image} (unsaved)")
        return users

    def choose_color(self, value: int | None = None) -> None:
        """Pick a colour for class ``value`` (the selected one by default) in a colour dialog."""
        value = self.selected_value() if value is None else value
        cls = self._find(self.classes(), value) if value is not None else None
        if cls is None:
            return
        chosen = QColorDialog.getColor(QColor(cls.color), self, f"Colour of {cls.name}")
        if chosen.isValid():
            self.set_color(cls.value, chosen.name())

    # ----------------------------------------------------------------- helpers
    def _commit(self, classes: list[ClassInfo]) -> bool:
        assert self.store is not None
        try:
            self.store.set_classes(classes)
        except (HitlError, ValueError) as exc:
            self._notify(str(exc))
            return False
        recolor_class_layers(self.viewer.layers, self.store)
        if self._in_table_signal:  # rebuild the table once its own signal has returned
            QTimer.singleShot(0, self._fill)
        else:
            self._fill()
        self.classes_changed.emit(self.store.classes)
        return True

    def _fill(self) -> None:
        classes = self.classes()
        selected = self.selected_value()
        self._shown = (str(self.store.path), classes) if self.store is not None else None
        self.table.blockSignals(True)
        self.table.setRowCount(len(classes))
        for row, c in enumerate(classes):
            value = QTableWidgetItem(str(c.value))
            value.setData(Qt.ItemDataRole.UserRole, c.value)
            value.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
            swatch = QTableWidgetItem(_swatch(c.color), "")
            swatch.setData(Qt.ItemDataRole.UserRole, c.color)
            swatch.setToolTip(f"{c.color} — double-click to change")
            swatch.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
            name = QTableWidgetItem(c.name)
            name.setFlags(
                Qt.ItemFlag.ItemIsEnabled
                | Qt.ItemFlag.ItemIsSelectable
                | Qt.ItemFlag.ItemIsEditable
            )
            for col, item in ((VALUE_COL, value), (COLOR_COL, swatch), (NAME_COL, name)):
                self.table.setItem(row, col, item)
            if c.value == selected:
                self.table.selectRow(row)
        self.table.blockSignals(False)
        self._update_buttons()

    def _update_buttons(self) -> None:
        has_store = self.store is not None
        self.add_button.setEnabled(has_store)
        has_row = has_store and self.selected_value() is not None
        self.color_button.setEnabled(has_row)
        self.remove_button.setEnabled(has_row)

    def _item_changed(self, item: QTableWidgetItem) -> None:
        if item.column() != NAME_COL:
            return
        value_item = self.table.item(item.row(), VALUE_COL)
        if value_item is None:
            return
        self._in_table_signal = True
        try:
            renamed = self.rename_class(int(value_item.data(Qt.ItemDataRole.UserRole)), item.text())
        finally:
            self._in_table_signal = False
        if not renamed:
            QTimer.singleShot(0, self._fill)  # put the old name back

    def _cell_double_clicked(self, row: int, column: int) -> None:
        item = self.table.item(row, VALUE_COL)
        if column == COLOR_COL and item is not None:
            self.choose_color(int(item.data(Qt.ItemDataRole.UserRole)))

    def _add_clicked(self) -> None:
        new = self.add_class()
        if new is None:
            return
        for row in range(self.table.rowCount()):
            item = self.table.item(row, VALUE_COL)
            if item is not None and int(item.data(Qt.ItemDataRole.UserRole)) == new.value:
                self.table.selectRow(row)
                self.table.editItem(self.table.item(row, NAME_COL))

    def _remove_clicked(self) -> None:
        value = self.selected_value()
        if value is not None:
            self.remove_class(value)

    def _check_name(self, name: str, classes: list[ClassInfo], value: int) -> str | None:
        """The stripped name, or ``None`` (after a notification) when empty or taken."""
        name = str(name).strip()
        if not name:
            self._notify("a class name cannot be empty")
            return None
        for c in classes:
            if c.value != value and c.name.casefold() == name.casefold():
                self._notify(f"there is already a class named {c.name!r} (value {c.value})")
                return None
        return name

    def _find(self, classes: list[ClassInfo], value: int) -> ClassInfo | None:
        cls = next((c for c in classes if c.value == value), None)
        if cls is None:
            self._notify(f"there is no class with value {value}")
        return cls

    def _require_store(self) -> bool:
        if self.store is None:
            self._notify("open or create a project first")
            return False
        return True

    def _notify(self, message: str) -> None:
        from napari.utils.notifications import show_warning

        show_warning(message)


def _replace(c: ClassInfo, **changes: Any) -> ClassInfo:
    return ClassInfo(**{**c.to_json(), **changes})


def _next_free_value(values: list[int]) -> int | None:
    """One above the highest value in use (values of removed classes are not reused at once)."""
    top = max(values, default=0)
    if top < MAX_LABEL_VALUE:
        return top + 1
    used = set(values)
    return next((v for v in range(1, MAX_LABEL_VALUE + 1) if v not in used), None)


def _normalise_color(color: str) -> str | None:
    """``#rrggbb`` (lower case) for a colour Qt understands, else ``None``."""
    q = QColor(str(color))
    return q.name() if q.isValid() else None
