"""The names users choose from — models, strategies, methods — and their help texts.

A light module (standard library only): the CLI builds its parser from it without importing
torch, numpy or zarr, so ``napari-hitl --help`` answers at once. The modules that implement
each choice import their names from here.
"""

from __future__ import annotations

# accepting predictions (napari_hitl.core.loop.accept)
DEFAULT_THRESHOLD = 0.95  # confidence a prediction needs to be accepted into the labels
DEFAULT_MARGIN = 1  # px kept between accepted pixels and a predicted class boundary
# iterations of the demo's simulated loop: enough for it to label 80 % of its pool (14 → 80 %)
DEMO_LOOP_ITERATIONS = 14

# the novelty gate (napari_hitl.core.learning.novelty): the factor the widget's check box and
# the docs use, the one measured in docs/learning-log.md ("The novelty gate in the library")
NOVELTY_GATE_FACTOR = 2.0

# the U-Net's filter-bank front end (TrainConfig.filter_bank): the scales the widget's check box
# and --filter-bank without scales use (ilastik's, as the forest's; docs/learning-log.md,
# "The filter bank in the U-Net")
FILTER_BANK_SIGMAS = (1.0, 2.0, 4.0, 8.0)

# the Lovász-softmax loss's weight (TrainConfig.lovasz_weight) that the widget's check box uses,
# the one measured in docs/learning-log.md ("Seventeenth session")
LOVASZ_WEIGHT = 1.0

DEFAULT_MODEL = "unet"
MODEL_NAMES = ("unet", "patch-cnn", "rf", "unet+rf")
# ``auto`` is no model of its own: the first Train of a fresh model picks one of MODEL_NAMES
# (napari_hitl.core.learning.auto), which the project then keeps
AUTO_MODEL = "auto"
AUTO_CANDIDATES = ("unet", "patch-cnn", "rf")
MODEL_CHOICES = (*MODEL_NAMES, AUTO_MODEL)


def may_train_unet(model: str) -> bool:
    """Whether a Train of ``model`` may train a U-Net, and so use its options (the novelty gate
    on its feature map, the filter-bank front end): ``unet``, an ensemble holding it, or
    ``auto``, which may pick it."""
    return "unet" in model or model == AUTO_MODEL


MODEL_HELP = {
    "unet": "small U-Net (default): 3 scales, 24/48/64 channels, any band count; fast and accurate",
    "patch-cnn": "the paper's 25×25 patch CNN (20 filters 11×11, sigmoid, pool 5, FC 100-100), "
    "evaluated densely",
    "rf": "ilastik-style baseline: multiscale filter features per band + a random forest",
    "unet+rf": "the U-Net and the forest trained on the same strokes, their calibrated "
    "probabilities mixed by the weight that fits the held-out strokes (costs both)",
    "auto": "the first Train compares unet, patch-cnn and rf on strokes of images (or image "
    "halves) each one did not train on and keeps the best (unet unless another is 0.02 "
    "better in balanced accuracy and better on every fold); costs six network trainings and "
    "three forests, once",
}

# active learning (napari_hitl.core.active.strategies)
STRATEGIES = ("hise", "entropy", "margin", "kcenter", "gmm", "random")
# which images a simulated person strokes first (napari-hitl simulate --seed-choice)
SEED_CHOICES = ("random", "typical")

# explanations and attention steering (napari_hitl.core.explain.gradcam,
# napari_hitl.core.explain.steering)
ATTRIBUTION_METHODS = ("integrated", "gradient", "occlusion")
REGION_HELP = (
    "'image' (the whole image), 'box:ROW0,ROW1,COL0,COL1' (end exclusive) or "
    "'segment:ROW,COL' (the predicted segment of the class under that pixel)"
)
SUPERPIXEL_METHODS = ("felzenszwalb", "slic")

# test-time hints (napari_hitl.core.hints.commands)
CELL_NAMES = tuple(
    f"{r} {c}" if (r, c) != ("middle", "middle") else "middle"
    for r in ("top", "middle", "bottom")
    for c in ("left", "middle", "right")
)
PLACE_HELP = (
    "a place is one of: " + ", ".join(CELL_NAMES) + "; top, bottom, left, right (a row or "
    "column of cells); 'cell R,C' (1-based); everywhere"
)

# help texts of options every command spells the same way (napari_hitl.cli*)
STORE_HELP = "the project store (a .zarr folder)"
IMAGE_HELP = "the image's name in the store"
SEED_HELP = "random seed: the same seed gives the same result (default 0)"
THREADS_HELP = "torch threads, ≥ 1 (default: all cores)"
