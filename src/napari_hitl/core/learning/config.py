"""Training settings and reports shared by every model (:class:`TrainConfig`,
:class:`TrainReport`) and the per-model defaults behind ``None`` settings."""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

from napari_hitl.core.jsonable import Jsonable
from napari_hitl.core.progress import Progress

MODEL_DEFAULTS: dict[str, dict[str, float]] = {
    # Many small crops rather than a few large ones: 160 steps of 16 crops of 16² (+ 8 px
    # margin) cost 1.3x the former 40 steps of 8 crops of 64² and learn from a few strokes
    # what those could not (docs/learning-log.md, "Training crops": mean test mIoU over 10
    # iterations, 3 seeds, dsb2018 0.614 -> 0.679, sen1floods 0.744 -> 0.777, eo-learn
    # 0.204 -> 0.206). A warm start trains as long as a fresh one (160, not 80): the mean
    # test mIoU over 10 iterations rises on all five benchmark sets (5 seeds: dsb2018 +0.034,
    # sen1floods +0.013, eo-learn +0.002, houston +0.024, cloud38 +0.012) and the loop no
    # longer loses ground on dsb2018 (final 0.663 -> 0.704); eo-learn's final is 0.008 lower
    # (docs/learning-log.md, "Warm steps"). A fresh network trains 320 steps (since 2026-12-05):
    # its first model then pushes more of the pool at the same accuracy; mean test mIoU over
    # 10 iterations dsb2018 +0.017, eo-learn +0.016, houston +0.005 (5 seeds), sen1floods and
    # cloud38 within 0.001, and with a person correcting, sen1floods reaches a pool 85 %
    # labeled at 85 % right with 1.95 % of it painted instead of 3.28 % (docs/learning-log.md,
    # "Training longer"). Only the first Train of a project (or a fresh one) pays: ~2x.
    # Since the seventh 2026-12-05 session each step draws 32 crops of 8² (+ 8 px margin)
    # instead of 16 of 16²: twice the places per step at 1.1x the cost; mean test mIoU over 10
    # iterations (3 seeds, default in the same run) dsb2018 +0.023, sen1floods +0.027,
    # houston +0.050, eo-learn level, cloud38 -0.007, photos8 +0.014 (2 seeds), and the
    # accepted pixels more often right (houston 0.661 -> 0.743, photos8 0.661 -> 0.764)
    # (docs/learning-log.md, "More places per step").
    "unet": {"steps": 320, "warm_steps": 160, "lr": 3e-3},
    # The patch CNN's sigmoid units learn slowly: 1200 steps for a new network and 400 for a
    # warm start (since the twenty-fourth 2026-12-07 session, instead of 120 and 40) raise its
    # mean test mIoU over 10 iterations on every set (3 seeds: dsb2018 0.709 -> 0.769,
    # sen1floods 0.679 -> 0.692, cloud38 0.813 -> 0.829, eo-learn 0.195 -> 0.201, photos8
    # 0.098 -> 0.164) and it no longer loses ground over the loop; 600 / 200 lost to 120 / 40
    # on two sets' seeds. A Train then cost 1.4-4x the U-Net's on 3-15 bands (before the
    # channels-last batches from 4 bands on: 0.87x of that on 15), and its first convolution
    # grows with the bands: houston's 51 take 359 s for a fresh Train on one thread
    # (docs/learning-log.md, "Twenty-fourth session", "Twenty-fifth session").
    "patch-cnn": {"steps": 1200, "warm_steps": 400, "lr": 1e-2},
}


MAX_BANK_SIGMA = 16.0  # the largest filter-bank scale (its halo is 4σ + a few pixels)

# What the temperature minimises on the held-out strokes, per model (TrainConfig.calibration).
# The U-Net's few confidently wrong held-out pixels made the NLL soften every pixel (the
# README's sample loop: T 2.2, 2 % of the pool accepted where T 1 accepts 56 % at 96.8 %
# right); on the three benchmark sets the Brier fit is within ±0.01 of NLL's mIoU. The
# forest keeps NLL: Brier softened it more and its sen1floods run degraded (docs/learning-log.md,
# "Calibration").
CALIBRATION_DEFAULTS: dict[str, str] = {"unet": "brier", "patch-cnn": "nll", "rf": "nll"}


@dataclass
class TrainConfig(Jsonable):
    """Training settings (every field is a CLI/GUI option).

    Attributes
    ----------
    model
        ``"unet"`` (default), ``"patch-cnn"`` or ``"rf"``.
    steps
        Optimizer steps for a fresh model; ``warm_steps`` when continuing from the last one
        (``None``: the model's default in :data:`MODEL_DEFAULTS`).
    time_budget
        Train a network for this many seconds instead of ``steps`` / ``warm_steps`` (fresh and
        warm alike; at least 10 steps), its learning-rate cycle laid over the seconds
        (:class:`~napari_hitl.core.learning.schedule.TrainingClock`). ``None`` (default): the
        step counts, which reproduce exactly under a seed; a budget's step count depends on
        the machine's speed and load (the report says how many ran). The forest fits once and
        ignores it.
    batch_size, patch
        U-Net crops per step and the edge of their supervised window (each crop adds an 8 px
        margin of context, ``TRAIN_MARGIN``): 32 crops of 8². Many small crops around the
        strokes train better than a few large ones at about the same cost (see
        ``MODEL_DEFAULTS``).
    lr
        AdamW learning rate (``None``: the model's default). The paper trained its patch CNN with
        SGD + momentum; with its sigmoid units that needs thousands of steps, so AdamW is the
        default and ``extra={"optimizer": "sgd"}`` restores the paper's choice.
    machine_weight
        Loss weight of machine-accepted pixels relative to human ones (< 1 limits
        confirmation bias).
    warm_shrink
        Warm start keeps this share of the last weights and takes the rest from the seeded
        initial weights ("shrink and perturb"; 1 = plain warm start, 0 = retrain from scratch).
        Plain warm starts make the confidence grow every iteration (see
        ``shrink_towards_init``).
    precise_bn
        Re-estimate the U-Net's BatchNorm statistics after training (see
        ``recompute_batchnorm``; off by default: +0.3 s per iteration for a gain within the
        seed-to-seed noise of the benchmark).
    holdout_fraction
        Share of human strokes kept out of training to fit the temperature (calibration).
    calibration
        What the temperature minimises on them: ``"brier"`` or ``"nll"`` (see
        :func:`fit_temperature`; ``None``: the model's default in :data:`CALIBRATION_DEFAULTS`).
    augment
        Random flips and 90° rotations (and the band jitter below).
    band_jitter
        With ``augment``, each U-Net training crop's bands get a random gain and offset of
        their own (σ 0.1 and 0.05 of the normalized range): robustness to tiles whose bands
        shift apart between dates, orbits and sensors. On by default — without it the flood
        tiles lose 0.041 test mIoU, the field tiles 0.026 and the photos 0.015 — but stained
        nuclei gain 0.037 (3 of 3 seeds): where the balance of the colours is the signal, turn
        it off (docs/benchmarks.md, "Which part of the augmentation"). Bands that copy one
        another (a gray image stored as RGB) share one gain and offset
        (:func:`~napari_hitl.core.learning.batches.copied_bands`).
    image_power
        How a training crop's image is drawn once its class is: among the images holding
        labeled pixels of the class, with probability ∝ n ** ``image_power`` for an image's n
        of them, then one of those pixels uniformly. 0 (the default since 2026-12-06) gives
        every image the same share; 1 gives every labeled pixel the same chance (the draw
        before), so the images painted most — or, once the loop pushes, the ones the model
        already knew best — teach most of every batch. With 0 the mean test mIoU over 10
        iterations rose on the nuclei, field and city tiles (dsb2018 +0.019, eo-learn +0.020,
        5 seeds; houston +0.014, 3) and stayed level on the flood, cloud and photo sets
        (docs/learning-log.md, "Twelfth session").
    seed
        Makes training deterministic.
    threads
        torch threads (default: all cores).
    extra
        Model-specific options (e.g. ``{"optimizer": "sgd"}``).
    potts_weight
        Weight of the relaxed Potts loss on every pixel of the U-Net's training crops
        (:func:`~napari_hitl.core.learning.regularizers.local_potts_loss`: neighbours with
        similar bands should agree; 0 = off).
    lovasz_weight
        Weight of the Lovász-softmax loss added to the cross-entropy on the labeled pixels of
        each batch (:func:`~napari_hitl.core.learning.losses.lovasz_softmax`: a surrogate of
        the mean intersection over union; 0 = off). Measured in docs/learning-log.md
        ("Seventeenth session").
    propagate_weight
        Spread each training stroke over the superpixels whose human pixels are all of its
        class, at this loss weight (:mod:`napari_hitl.core.learning.propagation`; 0 = off).
    tta
        Test-time augmentation: a network's logits are the mean over the image and its three
        flips (horizontal, vertical, both), each flipped back — 4× the inference cost. Kept
        with the model, so every later prediction of it does the same.
    novelty_gate
        The U-Net's novelty gate (:mod:`napari_hitl.core.learning.novelty`): after training,
        pixels whose last-layer features lie further from every class's human pixels than this
        factor times the 99th percentile of the human pixels' own distances get their logits
        scaled towards uniform (the predicted class stays, its confidence falls), so the loop
        does not accept them. 0 = off. Kept with the model.
    filter_bank
        Scales σ of a fixed filter bank whose ilastik-style features (Gaussian, gradient,
        Laplacian, Hessian and structure-tensor eigenvalues, on the first 3 principal
        components of the bands) enter the U-Net beside the bands
        (:class:`~napari_hitl.core.learning.networks.SmallUNet`; ``None``: none). Kept with
        the model; a stored model with another setting is not continued. Other models ignore
        it.
    row_position
        Give the model each pixel's height in its image as one more input channel (0 top, 1
        bottom; :attr:`~napari_hitl.core.learning.data.Normalization.row_position`): a location
        cue for photos, whose sky is up. Off by default — on tiles, slides and stacks a pixel's
        row says nothing about its class. Kept with the model; a stored model with another
        setting is not continued.
    bands
        Names of the bands the model uses, in this order (``None``: every band of the images).
        Each image is read by band name, so images may hold other bands as well; a stored model
        trained on other bands is not continued (training starts afresh).
    """

    model: str = "unet"
    steps: int | None = None
    warm_steps: int | None = None
    time_budget: float | None = None
    batch_size: int = 32
    patch: int = 8
    lr: float | None = None
    machine_weight: float = 0.5
    warm_shrink: float = 0.5
    precise_bn: bool = False
    holdout_fraction: float = 0.15
    calibration: str | None = None
    augment: bool = True
    band_jitter: bool = True
    image_power: float = 0.0
    seed: int = 0
    threads: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    bands: list[str] | None = None
    potts_weight: float = 0.0
    lovasz_weight: float = 0.0
    propagate_weight: float = 0.0
    tta: bool = False
    novelty_gate: float = 0.0
    filter_bank: list[float] | None = None
    row_position: bool = False

    def check(self) -> None:
        """Refuse settings no training can use, before anything is trained or saved.

        Raises
        ------
        ValueError
            One line naming the setting (and its command-line option) and the value: a step
            count, crop size or thread count below 1, a time budget that is not > 0 seconds, a
            learning rate that is not > 0, a weight
            that is negative or not finite, a shrink outside [0, 1], a held-out share outside
            [0, 1), an unknown calibration objective.
        """
        for what, value in (
            ("training steps (--steps)", self.steps),
            ("warm steps (--warm-steps)", self.warm_steps),
            ("threads (--threads)", self.threads),
        ):
            if value is not None and not (isinstance(value, int) and value >= 1):
                raise ValueError(f"the {what} must be a whole number >= 1, got {value}")
        for what, value in (("crops per step", self.batch_size), ("crop edge", self.patch)):
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"the {what} must be a whole number >= 1, got {value}")
        budget = self.time_budget
        if budget is not None and not (
            isinstance(budget, (int, float)) and math.isfinite(budget) and budget > 0
        ):
            raise ValueError(
                f"the training time budget (--time-budget) must be a number of seconds > 0, "
                f"got {budget}"
            )
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"the learning rate must be a finite number > 0, got {self.lr}")
        for what, value in (
            ("machine weight (--machine-weight)", self.machine_weight),
            ("propagation weight (--propagate-weight)", self.propagate_weight),
            ("Potts weight (--potts-weight)", self.potts_weight),
            ("Lovász weight (--lovasz-weight)", self.lovasz_weight),
            ("novelty gate factor (--novelty-gate, 0 = off)", self.novelty_gate),
        ):
            check_weight(what, value)
        if not (math.isfinite(self.image_power) and 0 <= self.image_power <= 1):
            raise ValueError(
                f"the image draw's power (--image-power) must be in [0, 1], got {self.image_power}"
            )
        if not (math.isfinite(self.warm_shrink) and 0 <= self.warm_shrink <= 1):
            raise ValueError(
                f"the warm shrink (--warm-shrink) must be in [0, 1], got {self.warm_shrink}"
            )
        if not (math.isfinite(self.holdout_fraction) and 0 <= self.holdout_fraction < 1):
            raise ValueError(
                f"the held-out share of strokes must be in [0, 1), got {self.holdout_fraction}"
            )
        bank = self.filter_bank
        if bank is not None and not all(
            isinstance(v, (int, float)) and math.isfinite(v) and 0 < v <= MAX_BANK_SIGMA
            for v in bank
        ):
            raise ValueError(
                f"the filter-bank scales (--filter-bank) must be numbers in (0, "
                f"{MAX_BANK_SIGMA:g}] px, got {bank}"
            )
        if self.calibration not in (None, "brier", "nll"):
            got = self.calibration
            raise ValueError(f"the calibration (--calibration) is 'brier' or 'nll', not {got!r}")


def check_weight(what: str, value: float) -> None:
    """Refuse a loss weight or factor that is not a finite number >= 0 (one-line ValueError)."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ValueError(f"the {what} must be a finite number >= 0, got {value}")


@dataclass
class TrainReport:
    """What one training run did."""

    steps: int
    seconds: float
    final_loss: float
    class_pixels: list[int]
    holdout_pixels: int
    temperature: float
    holdout_nll_before: float | None = None
    holdout_nll_after: float | None = None
    warm_start: bool = False
    holdout_accuracy: float | None = None
    model_choice: dict[str, Any] | None = None  # what ``auto`` compared (ModelChoice.to_json)


TrainJob = Generator[Progress, None, TrainReport]
"""What ``Classifier.fit`` returns: a generator of progress whose return value is the report."""
