"""The Learning-loop dock widget's controls and their layout (no behaviour: the widget in
:mod:`napari_hitl._qt.loop.widget` connects them)."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLayout,
    QListWidget,
    QSlider,
    QSpinBox,
    QVBoxLayout,
)

from napari_hitl._napari.result_layers import UNCERTAINTY_KINDS
from napari_hitl._qt.controls import button, combo, hrow, job_progress, label
from napari_hitl._qt.dock import DockWidget
from napari_hitl._qt.jobs import JobRunner
from napari_hitl.core.choices import (
    DEFAULT_MARGIN,
    DEFAULT_MODEL,
    DEFAULT_THRESHOLD,
    FILTER_BANK_SIGMAS,
    LOVASZ_WEIGHT,
    MODEL_CHOICES,
    MODEL_HELP,
    NOVELTY_GATE_FACTOR,
)
from napari_hitl.core.learning.config import MODEL_DEFAULTS


class LoopPanel(DockWidget):
    """The loop's controls: image and labels choice, model, bands, the Train / Infer / Add
    buttons, threshold and margin, progress, status, areas and history."""

    def __init__(self) -> None:
        super().__init__()
        self.labels_combo = QComboBox()
        self.image_combo = QComboBox()
        self.image_combo.setToolTip(
            "An image layer that is not in a project yet (e.g. a TIFF opened by another reader)"
        )
        self.adopt_button = button(
            "Label this image",
            "Put the image into a project store (next to its file as NAME.hitl.zarr, or in "
            "~/napari-hitl/) and add a labels layer to paint in; reopening it resumes",
        )
        self.model_combo = QComboBox()
        for name in MODEL_CHOICES:
            self.model_combo.addItem(name)
            self.model_combo.setItemData(self.model_combo.count() - 1, MODEL_HELP[name],
                                         Qt.ItemDataRole.ToolTipRole)  # fmt: skip
        self.model_combo.setCurrentText(DEFAULT_MODEL)
        self.novelty_check = QCheckBox("Hold back pixels unlike any stroke")
        self.novelty_check.setToolTip(
            "U-Net: after Train, pixels whose features lie far from every class's painted "
            f"pixels ({NOVELTY_GATE_FACTOR:g}x their own 99th-percentile distance) keep their "
            "predicted class but lose confidence, so Add predictions leaves them to you. Fewer "
            "pixels are added, more of them right (see docs/learning.md)"
        )
        self.bank_check = QCheckBox("Texture features (filter bank)")
        self.bank_check.setToolTip(
            "U-Net: feed the network ilastik-style features (smoothing, edges, blobs, ridges at "
            "scales " + ", ".join(f"{v:g}" for v in FILTER_BANK_SIGMAS) + " px) beside the "
            "bands. Measured: when you correct the added labels after each push, more pools "
            "finished on nuclei, field, flood and cloud tiles, and nuclei, fields, city tiles "
            "and photos were predicted better; without corrections flood, "
            "city and cloud tiles were predicted worse (docs/learning.md). For nuclei you "
            "correct, tick Train for overlap (Lovász loss) too: with both, every nuclei pool "
            "reached 85 % labeled and right, with the least paint. About 1.5x the training "
            "and 2.4x the inference time. Changing it starts a new model at the next Train"
        )
        self.row_check = QCheckBox("Photos: use each pixel's height in the image")
        self.row_check.setToolTip(
            "Give the model each pixel's row (0 at the top, 1 at the bottom) as one more input: "
            "in photos the sky is up and the road is down. Measured on outdoor photos: test "
            "mIoU and accepted labels much better (docs/learning-log.md). Leave it off for tiles, "
            "slides and stacks, where a pixel's row says nothing about its class. Changing it "
            "starts a new model at the next Train"
        )
        self.jitter_check = QCheckBox("Vary each band's level in training")
        self.jitter_check.setChecked(True)
        self.jitter_check.setToolTip(
            "U-Net: each training crop's bands get a random gain and offset of their own, so "
            "the model looks past bands that shift apart between tiles, dates and cameras "
            "(bands that copy one another, as in a gray image saved as RGB, share theirs). "
            "Measured: needed on flood, field and photo sets; stained nuclei did better "
            "without it, where the balance of the colours is the signal (docs/learning-log.md)"
        )
        self.lovasz_check = QCheckBox("Train for overlap (Lovász loss)")
        self.lovasz_check.setToolTip(
            f"U-Net: add {LOVASZ_WEIGHT:g}x the Lovász-softmax loss, a stand-in for each class's "
            "intersection over union, to the training loss. Measured with a person correcting "
            "the additions: flood tiles reach 85 % labeled and right with less paint, city "
            "tiles predict better; field tiles' and photos' additions are a little less often "
            "right, and one nuclei run in six went wrong on unpainted images; with Texture "
            "features as well, nuclei pools finished with the least paint of any setting "
            "(docs/learning.md). The model continues; only its later training changes"
        )
        # the options only a U-Net has (the widget disables them for the other models)
        self.unet_boxes = (
            self.novelty_check,
            self.bank_check,
            self.jitter_check,
            self.lovasz_check,
        )
        self.fresh_check = QCheckBox("Start a new network at the next Train")
        self.fresh_check.setToolTip(
            "Forget the trained model and train a new one from scratch on every label (a "
            "U-Net's 320 first steps) instead of continuing it, e.g. after clearing many wrong "
            "additions or when a class changed its meaning. Unticks itself after that Train"
        )
        self.budget_spin = QDoubleSpinBox()
        self.budget_spin.setRange(0.0, 600.0)
        self.budget_spin.setDecimals(1)
        self.budget_spin.setSingleStep(1.0)
        self.budget_spin.setSuffix(" s")
        self.budget_spin.setSpecialValueText("the model's steps")  # shown at 0
        unet, patch = MODEL_DEFAULTS["unet"], MODEL_DEFAULTS["patch-cnn"]
        self.budget_spin.setToolTip(
            "Train a network for this many seconds instead of its fixed steps (U-Net: "
            f"{unet['steps']:.0f} for a new network, {unet['warm_steps']:.0f} after that: about "
            "10 s and 5 s for a 512² image on 2 cores; the patch CNN "
            f"{patch['steps']:.0f} and {patch['warm_steps']:.0f}). "
            "Longer can fit more strokes; the result then depends on the machine's speed. The "
            "forest ignores it"
        )
        self.train_button = button(
            "Train", "Train on the labels of every image of the project (warm start)"
        )
        self.infer_button = button(
            "Infer && filter", "Predict the current image; the slider then filters it instantly"
        )
        self.threshold_slider = QSlider(Qt.Orientation.Horizontal)
        self.threshold_slider.setRange(50, 100)
        self.threshold_slider.setValue(round(DEFAULT_THRESHOLD * 100))
        self.threshold_label = QLabel()
        self.margin_spin = QSpinBox()
        self.margin_spin.setRange(0, 10)
        self.margin_spin.setValue(DEFAULT_MARGIN)
        self.margin_spin.setSuffix(" px")
        self.margin_spin.setToolTip(
            "Keep accepted pixels this far inside a confident region of one class: wrong "
            "confident pixels sit on class boundaries (0 = accept every pixel above the threshold)"
        )
        self.uncertainty_combo = combo(
            UNCERTAINTY_KINDS,
            "Uncertainty layer: entropy of the class probabilities, or 1 − margin between the "
            "two most likely classes (high where two classes compete)",
        )
        self.bands_list = QListWidget()
        self.bands_list.setMaximumHeight(90)
        self.bands_list.setToolTip("Bands the model trains on (untick noisy bands)")
        self.stack_combo = combo(
            ["current slice", "whole stack"],
            "A Z/T stack: predict the slice on show or every slice",
        )
        self.live_check = QCheckBox("Live")
        self.live_check.setToolTip(
            "Train in the background while you paint; the visible part of the image is "
            "predicted again after each stroke. Switching it off saves the model and predicts "
            "the whole image."
        )
        self.update_button = button(
            "Update",
            "One live round: train briefly on the labels and predict the visible part of the image",
        )
        self.add_button = button(
            "Add predictions", "Add predicted pixels above the threshold to unlabeled pixels only"
        )
        self.undo_button = button("Undo push", "Undo the last Add predictions of this image")
        self.clear_button = button(
            "Clear machine labels", "Remove every machine label of this image (human labels stay)"
        )
        self.region_button = button(
            "Region…",
            "Draw a rectangle: Add predictions then only adds pixels inside it "
            "(delete the rectangle to use the whole image)",
        )
        self.shortcuts_label = QLabel("<i>Shortcuts: Alt-T/I/A/U/L, Alt-1…9 (hover)</i>")
        self.progress = job_progress()
        self.status = label(
            "Paint a few pixels of each class, then Train.", plain=True
        )  # class names show as typed
        self.areas = label()
        self.history_label = label()
        self.history_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.history_label.setToolTip(
            "One line per Train (latest last): human pixels and strokes so far, labeled and "
            "machine-labeled share of all pixels, accuracy on the held-out human strokes. "
            "`napari-hitl history STORE --plot FILE` prints and plots all of it."
        )
        self.jobs = JobRunner(self.progress)

    def lay_out(self, background_row: QLayout, points_row: QLayout) -> None:
        """Arrange the controls, with the rows of the background-prediction and points helpers."""
        form = QFormLayout()
        form.addRow("New image", hrow(self.image_combo, self.adopt_button, stretch={0: 1}))
        form.addRow("Labels layer", self.labels_combo)
        form.addRow("Model", self.model_combo)
        form.addRow("", self.novelty_check)
        form.addRow("", self.bank_check)
        form.addRow("", self.row_check)
        form.addRow("", self.jitter_check)
        form.addRow("", self.lovasz_check)
        form.addRow("", self.fresh_check)
        form.addRow("Train for", self.budget_spin)
        form.addRow("Model bands", self.bands_list)
        form.addRow("Predict", self.stack_combo)
        form.addRow("Uncertainty", self.uncertainty_combo)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.train_button)
        layout.addWidget(self.infer_button)
        layout.addLayout(background_row)
        layout.addLayout(hrow(self.live_check, self.update_button))
        layout.addWidget(QLabel("Confidence threshold"))
        layout.addLayout(hrow(self.threshold_slider, self.threshold_label))
        margin_form = QFormLayout()
        margin_form.addRow("Boundary margin", self.margin_spin)
        layout.addLayout(margin_form)
        layout.addLayout(hrow(self.add_button, self.undo_button, self.region_button))
        layout.addWidget(self.clear_button)
        layout.addLayout(points_row)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.areas)
        layout.addWidget(self.history_label)
        layout.addWidget(self.shortcuts_label)
        layout.addStretch(1)

    def show_model_inputs(self, config: dict) -> None:
        """Tick Texture features and the row cue as the stored model's ``config`` has them."""
        self.bank_check.setChecked(bool((config.get("spec") or {}).get("bank")))
        self.row_check.setChecked(bool((config.get("normalization") or {}).get("row_position")))
