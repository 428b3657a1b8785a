"""The *Explain and guide* dock widget's controls and their layout (no behaviour: the widget
in :mod:`napari_hitl._qt.explain.widget` connects them)."""

from __future__ import annotations

from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from napari_hitl._qt.controls import button, combo, hrow, job_progress, label
from napari_hitl._qt.dock import DockWidget
from napari_hitl._qt.jobs import JobRunner
from napari_hitl._qt.project.band_chart import BandChart
from napari_hitl.core.active.strategies import STRATEGIES
from napari_hitl.core.choices import ATTRIBUTION_METHODS
from napari_hitl.core.explain.steering import SUPERPIXEL_METHODS

REGIONS = ("segment under the cursor", "current view", "whole image")


class ExplainPanel(DockWidget):
    """The controls: what to explain (class, region, layer, attribution method), the band
    chart, the click-guidance buttons, candidate ranking, progress and status."""

    def __init__(self) -> None:
        super().__init__()
        self.class_combo = QComboBox()
        self.region_combo = combo(
            REGIONS,
            "What the explanation is about: the predicted segment under the mouse cursor "
            "(hover, then Alt-E), the pixels in view, or the whole image",
        )
        self.layer_combo = QComboBox()
        self.layer_combo.addItem("default")
        self.layer_combo.setToolTip("Network layer of Grad-CAM (default: the smallest encoding)")
        self.method_combo = combo(
            [*ATTRIBUTION_METHODS, "none"],
            "integrated: integrated gradients from band means (default); gradient: gradient × "
            "input, fastest; occlusion: replace one band by its mean; none: Grad-CAM only",
        )
        self.compute_button = button("Compute", "Grad-CAM and band attribution — Alt-E")
        self.chart = BandChart()
        self.band_combo = QComboBox()
        self.band_combo.setToolTip("The band whose attribution map is shown")
        self.click_button = button(
            "Click mode",
            "Left click: where the network should look (positive). Right click: a region it "
            "must ignore (the Grad-CAM superpixel under the click) — Alt-G",
            checkable=True,
        )
        self.superpixel_combo = combo(SUPERPIXEL_METHODS)
        self.clear_button = QPushButton("Clear clicks")
        self.confirm_button = button(
            "Confirm", "Keep this image's clicks for the next fine-tuning — Alt-K"
        )
        self.next_button = button("Next", "The next candidate image — Alt-X")
        self.finetune_button = button(
            "Fine-tune",
            "Fine-tune on the confirmed clicks: loss = w_g·(loss_pos + loss_neg) + w_c·loss_c",
        )
        self.revert_button = button("Revert", "Put the model from before the last fine-tuning back")
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(1, 500)
        self.steps_spin.setValue(30)
        self.steps_spin.setSuffix(" steps")
        self.strategy_combo = combo(
            STRATEGIES,
            "How candidates are ordered (Active learning strategies; gmm: most typical first, as "
            "in the paper)",
            current="gmm",
        )
        self.rank_button = QPushButton("Rank candidates")
        self.candidate_list = QListWidget()
        self.candidate_list.setMaximumHeight(100)
        self.progress = job_progress()
        self.cancel_button = QPushButton("Cancel")
        self.jobs = JobRunner(self.progress)
        self.status = label(
            "Train a model (Learning loop), then Compute.", plain=True
        )  # class names show as typed

        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("<b>Explain</b>"))
        form = QFormLayout()
        form.addRow("class", self.class_combo)
        form.addRow("region", self.region_combo)
        form.addRow("layer", self.layer_combo)
        form.addRow("bands", self.method_combo)
        layout.addLayout(form)
        layout.addLayout(hrow(self.compute_button, self.cancel_button))
        layout.addWidget(self.progress)
        layout.addWidget(self.chart)
        layout.addWidget(self.band_combo)
        layout.addWidget(QLabel("<b>Guide attention</b>"))
        layout.addLayout(hrow(self.click_button, self.superpixel_combo, self.clear_button))
        row = QHBoxLayout()
        for b in (self.confirm_button, self.next_button, self.finetune_button, self.revert_button):
            row.addWidget(b)
        layout.addLayout(row)
        layout.addLayout(hrow(self.steps_spin, self.strategy_combo, self.rank_button))
        layout.addWidget(self.candidate_list)
        layout.addWidget(self.status)
