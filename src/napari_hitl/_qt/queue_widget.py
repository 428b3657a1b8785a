"""The Active-learning dock widget: the ranked queue of images/tiles, a coverage map, the
model's questions about single pixels, and suspect human labels.

Thin over :mod:`napari_hitl.core.active.review_queue`; every job that may predict runs in a worker
thread.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from napari_hitl._napari.layers import META, load_stored_labels, save_layer_labels
from napari_hitl._napari.names import coverage_name, labels_name, question_name
from napari_hitl._napari.shortcuts import QUEUE_SHORTCUTS
from napari_hitl._napari.view import (
    centre_on,
    plane_index,
    save_store_labels,
    show_store_image,
    shown_project_image,
)
from napari_hitl._qt.controls import button, combo, hrow, job_progress, label
from napari_hitl._qt.dock import DockWidget
from napari_hitl._qt.jobs import JobRunner
from napari_hitl.core.active.review_queue import (
    QueueItem,
    Ranking,
    machine_annotate,
    mark_done,
    plane_prediction,
    project_questions,
    project_suspects,
    rank_project,
)
from napari_hitl.core.active.strategies import STRATEGIES, Question, Suspect, coverage_grid
from napari_hitl.core.choices import DEFAULT_THRESHOLD
from napari_hitl.core.errors import HitlError
from napari_hitl.core.loop import require_state
from napari_hitl.core.progress import Progress
from napari_hitl.core.store import ProjectStore

if TYPE_CHECKING:
    import napari

COLUMNS = ("#", "item", "route", "τ_l", "uncertain", "entropy")
QUESTION_CONTEXT = 128  # px of the image shown around an asked pixel


class QueueWidget(DockWidget):
    """Rank images/tiles for the human, jump there, answer the model's pixel questions."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.ranking: Ranking | None = None
        self.ranked_store: str | None = None
        self.pending: tuple[ProjectStore, str, int | None, Question] | None = None
        self.asked: dict[tuple[str, int | None], list[tuple[int, int]]] = {}
        self.suspects: list[Suspect] = []
        self._saved_keys: dict[str, Any] = {}

        self.strategy_combo = combo(
            STRATEGIES,
            "hise: low local consistency τ_l first; entropy / margin: most uncertain first; "
            "kcenter: most unlike what is labeled; gmm: most typical confidence map; random",
        )
        self.tile_spin = QSpinBox()
        self.tile_spin.setRange(0, 8192)
        self.tile_spin.setSingleStep(64)
        self.tile_spin.setValue(256)
        self.tile_spin.setSpecialValueText("whole images")
        self.tile_spin.setSuffix(" px tiles")
        self.rank_button = button("Rank", "Score every image/tile with the current model — Alt-R")
        self.progress = job_progress()
        self.jobs = JobRunner(self.progress)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.next_button = button("Next item", "Jump to the first open item for the human — Alt-J")
        self.done_button = QPushButton("Mark done")
        self.delta_spin = QDoubleSpinBox()
        self.delta_spin.setRange(0.5, 1.0)
        self.delta_spin.setSingleStep(0.01)
        self.delta_spin.setValue(DEFAULT_THRESHOLD)
        self.delta_spin.setPrefix("δ ")
        self.machine_button = button(
            "Machine-annotate easy items",
            "Push predictions above δ into the items routed to the machine (undo per image "
            "in the Learning loop widget); never over a label",
        )
        self.coverage_check = QCheckBox("Coverage map")
        self.coverage_check.setChecked(True)
        self.coverage_check.setToolTip("Share of labeled pixels per tile, over the image")
        self.ask_button = button(
            "Next question", "The unlabeled pixel the model is least sure of — Alt-Q"
        )
        self.skip_button = button("Skip", "Ask another pixel — Alt-S")
        self.auto_check = QCheckBox("ask the next after an answer")
        self.auto_check.setChecked(True)
        self.answer_row = QHBoxLayout()
        self.answer_buttons: list[QPushButton] = []
        self.question_label = label()
        self.suspect_button = button(
            "Find suspect labels",
            "Human labels the model contradicts with confidence ≥ 0.9: likely slips",
        )
        self.suspect_list = QListWidget()
        self.suspect_list.setMaximumHeight(110)
        self.status = label(
            "Train a model (Learning loop), then Rank.", plain=True
        )  # class names show as typed

        layout = QVBoxLayout(self)
        layout.addLayout(hrow(self.strategy_combo, self.tile_spin, self.rank_button))
        layout.addWidget(self.progress)
        layout.addWidget(self.table, 1)
        layout.addLayout(hrow(self.next_button, self.done_button, self.coverage_check))
        layout.addLayout(hrow(self.machine_button, self.delta_spin))
        layout.addWidget(QLabel("<b>Questions</b>"))
        layout.addLayout(hrow(self.ask_button, self.skip_button, self.auto_check))
        layout.addWidget(self.question_label)
        layout.addLayout(self.answer_row)
        layout.addWidget(QLabel("<b>Suspect labels</b>"))
        layout.addWidget(self.suspect_button)
        layout.addWidget(self.suspect_list)
        layout.addWidget(self.status)

        self.rank_button.clicked.connect(self.rank)
        self.table.itemSelectionChanged.connect(self._row_chosen)
        self.next_button.clicked.connect(self.next_item)
        self.done_button.clicked.connect(self.mark_selected_done)
        self.machine_button.clicked.connect(self.machine_annotate)
        self.coverage_check.toggled.connect(lambda _on: self.update_coverage())
        self.ask_button.clicked.connect(self.ask)
        self.skip_button.clicked.connect(self.skip)
        self.suspect_button.clicked.connect(self.find_suspects)
        self.suspect_list.currentRowChanged.connect(self._suspect_chosen)
        self.connect_jobs(
            {"Alt-R": self.rank, "Alt-J": self.next_item, "Alt-Q": self.ask, "Alt-S": self.skip},
            QUEUE_SHORTCUTS,
        )

    # ---------------------------------------------------------------- context
    def context(self) -> tuple[ProjectStore, str | None, Any]:
        """(store, image on show, its labels layer) — the active labels layer of a store first,
        else the first visible one, else any layer of a store (no image then).

        Raises
        ------
        HitlError
            No layer from a project store is open.
        """
        try:
            return shown_project_image(self.viewer)
        except HitlError:
            pass
        for ly in self.viewer.layers:
            meta = ly.metadata.get(META, {})
            if meta.get("store"):
                return ProjectStore.open(meta["store"], "a"), None, None
        raise HitlError("open a project (Project widget) or the sample data first")

    def _reload_labels(self, store: ProjectStore, images: set[str]) -> None:
        for image in images:
            name = labels_name(image)
            if name in self.viewer.layers:
                layer = self.viewer.layers[name]
                load_stored_labels(layer, store, image)

    def _set_busy(self, busy: bool) -> None:
        for b in (self.rank_button, self.ask_button, self.suspect_button):
            b.setEnabled(not busy)
        self.machine_button.setEnabled(not busy and self.ranking is not None)

    def _saved_store(self) -> ProjectStore | None:
        """The project of the open layers, with every labels layer saved into it (the core
        reads the store); ``None`` after showing the error."""
        try:
            store, _image, _layer = self.context()
            save_store_labels(self.viewer, store)
        except (HitlError, ValueError) as exc:
            self.show_error(exc)
            return None
        return store

    # ------------------------------------------------------------------ queue
    def rank(self) -> bool:
        """Rank the project's images/tiles in a worker thread; returns whether it started."""
        store = self._saved_store()
        if store is None:
            return False
        strategy = self.strategy_combo.currentText()
        tile = self.tile_spin.value() or None

        def done(ranking: Ranking) -> None:
            self.ranking, self.ranked_store = ranking, str(store.path)
            self._fill_table()
            self.update_coverage()
            self.status.setText(
                f"{len(ranking.items)} items by {strategy} (β {ranking.beta:.2f}, γ "
                f"{ranking.gamma:.2f}): {len(ranking.by_route('human'))} for you, "
                f"{len(ranking.by_route('machine'))} for the machine, "
                f"{len(ranking.by_route('done'))} done. Click a row to go there."
            )
            self._set_busy(False)

        return self.jobs.start(
            "Rank", lambda token: rank_project(store, strategy, tile=tile, cancel=token), done
        )

    def _fill_table(self) -> None:
        items = self.ranking.items if self.ranking else []
        self.table.blockSignals(True)
        self.table.setRowCount(len(items))
        for r, it in enumerate(items):
            s = it.stats
            cells = (str(it.rank + 1), it.key, it.route, f"{s.tau_l:.3f}",
                     f"{s.uncertain_fraction:.1%}", f"{s.mean_entropy:.3f}")  # fmt: skip
            for c, text in enumerate(cells):
                cell = QTableWidgetItem(text)
                if it.route == "done":
                    cell.setForeground(Qt.GlobalColor.gray)
                self.table.setItem(r, c, cell)
        self.table.blockSignals(False)

    def selected_items(self) -> list[QueueItem]:
        """The queue items of the selected rows."""
        if self.ranking is None:
            return []
        rows = sorted({i.row() for i in self.table.selectedIndexes()})
        return [self.ranking.items[r] for r in rows if r < len(self.ranking.items)]

    def _row_chosen(self) -> None:
        chosen = self.selected_items()
        if chosen:
            self.jump_to(chosen[0])

    def jump_to(self, item: QueueItem) -> None:
        """Show the item's image, its slice, and zoom onto its box."""
        try:
            store = ProjectStore.open(self.ranked_store or self.context()[0].path, "a")
        except HitlError as exc:
            self.show_error(exc)
            return
        layer = show_store_image(self.viewer, store, item.image)
        if layer is None:
            return
        r0, r1, c0, c1 = item.box
        centre_on(self.viewer, layer, *item.centre, index=item.index, extent=(r1 - r0, c1 - c0))
        self.update_coverage()
        self.status.setText(
            f"{item.key}: τ_l {item.stats.tau_l:.3f}, {item.stats.uncertain_fraction:.1%} "
            f"uncertain, {item.stats.labeled_fraction:.1%} labeled — paint here, then Train."
        )

    def next_item(self) -> None:
        """Jump to the first item routed to the human (and select its row)."""
        if self.ranking is None:
            self.status.setText("Rank first.")
            return
        for r, it in enumerate(self.ranking.items):
            if it.route == "human":
                self.table.selectRow(r)  # jumps through the selection signal
                return
        self.status.setText("Nothing left for you: every item is done or the machine's.")

    def mark_selected_done(self) -> None:
        """Mark the selected items done (stored in the project; they go to the end)."""
        chosen = self.selected_items()
        if not chosen or self.ranked_store is None:
            return
        mark_done(ProjectStore.open(self.ranked_store, "a"), [it.key for it in chosen])
        keys = {it.key for it in chosen}
        assert self.ranking is not None
        items = [it for it in self.ranking.items if it.key not in keys] + chosen
        for r, it in enumerate(items):
            it.rank = r
            if it.key in keys:
                it.route = "done"
        self.ranking.items = items
        self._fill_table()
        self.status.setText(f"{len(chosen)} item(s) done.")

    def machine_annotate(self) -> int:
        """Push pseudo-labels above δ into the machine's items; returns the pixels added."""
        if self.ranking is None or self.ranked_store is None:
            return 0
        store = ProjectStore.open(self.ranked_store, "a")
        try:
            save_store_labels(self.viewer, store)
            records = machine_annotate(store, self.ranking, self.delta_spin.value())
        except (HitlError, ValueError) as exc:
            self.show_error(exc)
            return 0
        images = {it.image for it in self.ranking.by_route("machine")}
        self._reload_labels(store, images)
        self.update_coverage()
        total = sum(r.count for r in records.values())
        self.status.setText(f"The machine labeled {total} px in {len(records)} image(s).")
        return total

    def update_coverage(self) -> None:
        """Show (or hide) the labeled share per tile of the image on show."""
        try:
            _store, image, layer = self.context()
        except HitlError:
            return
        if image is None or layer is None:
            return
        name = coverage_name(image)
        if not self.coverage_check.isChecked():
            if name in self.viewer.layers:
                self.viewer.layers[name].visible = False
            return
        tile = self.tile_spin.value() or 32
        index = plane_index(self.viewer, layer)
        lab = np.asarray(layer.data if index is None else layer.data[index])
        grid = coverage_grid(lab > 0, tile)
        scale = np.asarray(layer.scale, float)[-2:]
        translate = np.asarray(layer.translate, float)[-2:] + (tile - 1) / 2 * scale
        if name in self.viewer.layers:
            cov = self.viewer.layers[name]
            cov.data = grid
            cov.scale, cov.translate, cov.visible = scale * tile, translate, True
        else:
            cov = self.viewer.add_image(
                grid, name=name, scale=scale * tile, translate=translate, colormap="green",
                contrast_limits=(0.0, 1.0), opacity=0.5, blending="additive",
                metadata={META: {"role": "result", "image": image}},
            )  # fmt: skip
            self.viewer.layers.selection.active = layer  # keep painting in the labels

    # -------------------------------------------------------------- questions
    def ask(self) -> bool:
        """Find the open pixel with the smallest margin (in a worker); centre the view on it."""
        try:
            store, image, layer = self.context()
        except HitlError as exc:
            self.show_error(exc)
            return False
        if image is None:
            self.show_error(HitlError("show an image of the project first"))
            return False
        index = plane_index(self.viewer, layer)
        labels = np.array(layer.data if index is None else layer.data[index])
        avoid = list(self.asked.get((image, index), []))

        def job(token: Any) -> Any:
            state = require_state(store)
            yield Progress(0, 1, "predicting")
            pred = yield from plane_prediction(store, image, state, index, True, token)
            return project_questions(
                store, image, 1, index=index, state=state, labels=labels, avoid=avoid, pred=pred
            )

        def done(questions: list[Question]) -> None:
            self._set_busy(False)
            if not questions:
                self.question_label.setText("No unlabeled pixel left to ask about here.")
                return
            self._show_question(store, image, index, layer, questions[0])

        return self.jobs.start("Question", job, done)

    def _show_question(
        self, store: ProjectStore, image: str, index: int | None, layer: Any, q: Question
    ) -> None:
        self.pending = (store, image, index, q)
        self.asked.setdefault((image, index), []).append((q.row, q.col))
        name = question_name(image)
        point = np.array([[*([] if index is None else [index]), q.row, q.col]], float)
        if name in self.viewer.layers:
            self.viewer.layers[name].data = point
        else:
            self.viewer.add_points(
                point, name=name, symbol="ring", size=9, face_color="transparent",
                border_color="yellow", border_width=0.2, scale=layer.scale,
                translate=layer.translate, metadata={META: {"role": "result", "image": image}},
            )  # fmt: skip
        self.viewer.layers.selection.active = layer
        centre_on(self.viewer, layer, q.row, q.col, index, (QUESTION_CONTEXT, QUESTION_CONTEXT))
        names = {c.value: html.escape(c.name) for c in store.classes}  # rich text below
        self._build_answers(store)
        self.question_label.setText(
            f"<b>Which class is the ringed pixel</b> (row {q.row}, col {q.col})? The model "
            f"hesitates between <b>{names.get(q.first, q.first)}</b> and "
            f"<b>{names.get(q.second, q.second)}</b> (margin {q.margin:.3f}). "
            "Alt-1…9 or a button answers; Alt-S skips."
        )
        self._bind_answer_keys(store)

    def _build_answers(self, store: ProjectStore) -> None:
        for b in self.answer_buttons:
            self.answer_row.removeWidget(b)
            b.deleteLater()
        self.answer_buttons = []
        for i, cls in enumerate(store.classes[:9], start=1):
            b = QPushButton(f"{i} {cls.name}")
            b.setStyleSheet(f"border-left: 6px solid {cls.color};")
            b.clicked.connect(lambda _=False, v=cls.value: self.answer(v))
            self.answer_row.addWidget(b)
            self.answer_buttons.append(b)

    def _bind_answer_keys(self, store: ProjectStore) -> None:
        """While a question is pending, Alt-1…9 answer it (their painting bindings come back
        afterwards)."""
        if self._saved_keys:
            return
        for i, cls in enumerate(store.classes[:9], start=1):
            key = f"Alt-{i}"
            previous = self.viewer.bind_key(
                key, lambda _v, v=cls.value: self.answer(v), overwrite=True
            )
            self._saved_keys[key] = previous

    def _restore_keys(self) -> None:
        for key, previous in self._saved_keys.items():
            self.viewer.bind_key(key, previous, overwrite=True)
        self._saved_keys = {}

    def answer(self, value: int) -> bool:
        """Answer the pending question with class ``value``: the pixel becomes a human label
        (undoable in napari), saved to the store at once."""
        if self.pending is None:
            return False
        store, image, index, q = self.pending
        name = labels_name(image)
        if name not in self.viewer.layers:
            return False
        layer = self.viewer.layers[name]
        at = (q.row, q.col) if index is None else (index, q.row, q.col)
        layer.data_setitem(tuple(np.array([v]) for v in at), value)
        save_layer_labels(store, layer)
        self._end_question()
        names = {c.value: c.name for c in store.classes}
        self.status.setText(f"Pixel ({q.row}, {q.col}) is {names.get(value, value)}.")
        self.update_coverage()
        if self.auto_check.isChecked():
            self.ask()
        return True

    def skip(self) -> None:
        """Skip the pending question and ask another (away from it)."""
        if self.pending is None:
            return
        self._end_question()
        self.ask()

    def _end_question(self) -> None:
        if self.pending is not None:
            name = question_name(self.pending[1])
            if name in self.viewer.layers:
                self.viewer.layers[name].data = np.zeros((0, self.viewer.layers[name].ndim))
        self.pending = None
        self.question_label.setText("")
        for b in self.answer_buttons:
            b.setEnabled(False)
        self._restore_keys()

    # ---------------------------------------------------------------- suspects
    def find_suspects(self) -> bool:
        """List human labels the model contradicts (in a worker)."""
        store = self._saved_store()
        if store is None:
            return False

        def job(_token: Any) -> Any:
            yield Progress(0, 1, "finding suspect labels")
            return project_suspects(store)

        def done(found: list[Suspect]) -> None:
            self._set_busy(False)
            self.suspects = found
            self.ranked_store = self.ranked_store or str(store.path)
            names = {c.value: c.name for c in store.classes}
            self.suspect_list.clear()
            for s in found:
                where = s.image if s.index is None else f"{s.image}[{s.index}]"
                self.suspect_list.addItem(
                    f"{where}: {s.pixels} px {names.get(s.label, s.label)} — model: "
                    f"{names.get(s.predicted, s.predicted)} ({s.confidence:.2f})"
                )
            self.status.setText(f"{len(found)} suspect patch(es). Click one to look.")

        return self.jobs.start("Suspects", job, done)

    def _suspect_chosen(self, row: int) -> None:
        if not 0 <= row < len(self.suspects) or self.ranked_store is None:
            return
        s = self.suspects[row]
        layer = show_store_image(self.viewer, ProjectStore.open(self.ranked_store, "a"), s.image)
        if layer is not None:
            r0, r1, c0, c1 = s.box
            extent = (max(3 * (r1 - r0), 32), max(3 * (c1 - c0), 32))
            centre_on(self.viewer, layer, *s.centre, index=s.index, extent=extent)

    # ----------------------------------------------------------------- closing
    def release(self) -> None:
        """Give the answer keys back (closing, see DockWidget)."""
        self._restore_keys()
