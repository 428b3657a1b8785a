"""The default U-Net's confidence lets the loop accept most of the sample scenes' pool at once.

The README's sample loop (three of eight synthetic scenes scribbled, 2 % of their pixels): after
the first Train, a person accepting predictions at confidence ≥ 0.95 should get most of the pool
labeled, and labeled right. With the temperature fitted by NLL on the held-out strokes, one
held-out stroke the model got confidently wrong set T ≈ 2.2 for every pixel and 2 % of the pool
was accepted (62 % right); the Brier fit keeps T = 1 and accepts 56 % of it, 97 % right.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_hitl.core.evaluation.simulate import Sample, SimulationConfig, simulate
from napari_hitl.core.learning.net import CALIBRATION_DEFAULTS, TrainConfig, calibration_objective
from napari_hitl.core.progress import run_to_end
from napari_hitl.core.sample.scene import make_sample_scene


def test_default_calibration_is_brier_for_the_unet_only():
    assert calibration_objective(TrainConfig(), "unet") == "brier"
    assert calibration_objective(TrainConfig(), "rf") == "nll"
    assert calibration_objective(TrainConfig(calibration="nll"), "unet") == "nll"
    assert set(CALIBRATION_DEFAULTS.values()) <= {"brier", "nll"}


@pytest.mark.slow
def test_first_iteration_accepts_most_of_the_sample_pool_and_right():
    samples = []
    for i in range(8):
        scene = make_sample_scene((192, 192), seed=100 + i)
        samples.append(Sample(f"scene_{i}", scene.bands, scene.ground_truth.astype(np.int64)))
    config = SimulationConfig(
        iterations=1, seed_images=3, scribble_fraction=0.02, seed=0, train=TrainConfig(threads=2)
    )
    row = run_to_end(simulate(samples, config))["iterations"][0]
    # measured 0.56 labeled (1 % of it human), accepted pixels 96.8 % right; NLL: 0.016 / 62 %
    assert row["labeled_fraction"] > 0.3
    assert row["accepted_accuracy"] > 0.93
