"""The simulated-user benchmark writes the documented report; bad sets fail clearly."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import tifffile

from napari_hitl.cli import main
from napari_hitl.core.errors import InputFileError
from napari_hitl.core.evaluation.simulate import (
    Sample,
    SimulationConfig,
    load_image_folder,
    reliability,
    run_summary,
    simulate,
)
from napari_hitl.core.learning.data import TrainingDataError
from napari_hitl.core.progress import run_to_end
from napari_hitl.core.sample.scene import make_sample_scene

ITER_KEYS = {
    "iteration",
    "labeled_fraction",
    "label_accuracy",
    "test_pixel_accuracy",
    "test_miou",
    "human_pixels",
    "accepted_pixels",
    "accepted_accuracy",
    "train_seconds",
    "infer_seconds",
}


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    for i in range(4):
        s = make_sample_scene((96, 96), 50 + i)
        tifffile.imwrite(root / "images" / f"s{i}.tif", s.bands[[1, 2, 4, 7, 14]])
        tifffile.imwrite(root / "masks" / f"s{i}.tif", s.ground_truth)
    return root


def test_simulate_cli_writes_report_and_curves(tiny_set, tmp_path):
    out = tmp_path / "out"
    rc = main(
        [
            "simulate",
            "--images",
            str(tiny_set / "images"),
            "--masks",
            str(tiny_set / "masks"),
            "--out",
            str(out),
            "--iterations",
            "2",
            "--seed-images",
            "2",
            "--steps",
            "8",
            "--warm-steps",
            "4",
            "--interaction",
            "oracle",
            "--scribble-fraction",
            "0.03",
        ]
    )
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["model"] == "unet" and report["config"]["interaction"] == "oracle"
    assert report["config"]["n_test"] == 1 and report["config"]["n_pool"] == 3
    assert [r["iteration"] for r in report["iterations"]] == [1, 2]
    for row in report["iterations"]:
        assert set(row) >= ITER_KEYS
        assert 0 < row["labeled_fraction"] <= 1 and 0 <= row["test_miou"] <= 1
        # per test image, adding up to the pooled pixel accuracy
        (img,) = row["test_images"]
        assert img["image"] in {"s0", "s1", "s2", "s3"} and img["pixels"] > 0
        assert img["pixel_accuracy"] == pytest.approx(row["test_pixel_accuracy"], abs=1e-4)
        assert sum(img["true_share"]) == pytest.approx(1, abs=1e-3)
    first, second = report["iterations"]
    assert second["labeled_fraction"] >= first["labeled_fraction"]
    assert first["human_pixels"] == second["human_pixels"] > 0
    cal = second["test_calibration"]
    assert set(cal["thresholds"]) == {"0.5", "0.8", "0.9", "0.95", "0.99"} and 0 <= cal["ece"] <= 1
    # the oracle removed every wrong accepted pixel that has ground truth
    assert all(r["accepted_accuracy"] == 1.0 for r in report["iterations"] if r["accepted_pixels"])
    assert (out / "curves.png").stat().st_size > 5000
    sm = report["summary"]  # read from the iterations above
    assert (
        sm["final_test_miou"] == second["test_miou"]
        and sm["labeled_fraction"] == (second["labeled_fraction"])
    )
    assert sm["best_test_miou"] == max(first["test_miou"], second["test_miou"])
    assert sm["accepted_pixels"] == first["accepted_pixels"] + second["accepted_pixels"]
    if sm["accepted_pixels"]:
        assert sm["accepted_accuracy"] == 1.0  # the oracle


def test_run_summary_weights_accepted_accuracy_by_pixels():
    rows = [
        {"test_miou": 0.5, "accepted_pixels": 100, "accepted_accuracy": 0.9,
         "labeled_fraction": 0.2, "label_accuracy": 0.95},
        {"test_miou": 0.7, "accepted_pixels": 300, "accepted_accuracy": 1.0,
         "labeled_fraction": 0.5, "label_accuracy": 0.97},
        {"test_miou": 0.6, "accepted_pixels": 0, "accepted_accuracy": float("nan"),
         "labeled_fraction": 0.5, "label_accuracy": 0.97},
    ]  # fmt: skip
    sm = run_summary(rows)
    assert sm["accepted_accuracy"] == pytest.approx((90 + 300) / 400)
    assert sm["final_over_best"] == pytest.approx(0.6 / 0.7) and sm["best_test_miou"] == 0.7
    assert sm["labeled_fraction"] == 0.5 and sm["accepted_pixels"] == 400


def test_simulate_json_summary(tiny_set, tmp_path, capsys):
    argv = ["simulate", "--images", str(tiny_set / "images"), "--masks", str(tiny_set / "masks"),
            "--out", str(tmp_path / "o"), "--iterations", "1", "--seed-images", "2", "--steps",
            "4", "--json", "--seed-choice", "typical"]  # fmt: skip
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["summary"]["iterations"] == 1 and "iterations_to_target" in out["effort"]
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["config"]["seed_choice"] == "typical"
    with pytest.raises(SystemExit) as bad:  # argparse: a one-line usage error, exit 2
        main([*argv[:-1], "best"])
    assert bad.value.code == 2
    assert out["summary"]["final_test_miou"] == report["iterations"][0]["test_miou"]


def test_simulate_rf_and_patch_cnn_run(tiny_set):
    samples = load_image_folder(tiny_set / "images", tiny_set / "masks")
    for model in ("rf", "patch-cnn"):
        cfg = SimulationConfig(model=model, iterations=1, seed_images=2, scribble_fraction=0.03)
        cfg.train.steps = 10
        report = run_to_end(simulate(samples, cfg))
        assert report["iterations"][0]["test_pixel_accuracy"] > 0


def test_simulate_bad_input(tiny_set, tmp_path):
    with pytest.raises(InputFileError, match="no image has a mask"):
        load_image_folder(tiny_set / "images", tmp_path)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for n, c in (("a", 3), ("b", 4)):
        tifffile.imwrite(
            tmp_path / "images" / f"{n}.tif",
            np.zeros((c, 8, 8), np.float32),
            photometric="minisblack",
            planarconfig="separate",
        )
    for n in "ab":
        tifffile.imwrite(tmp_path / "masks" / f"{n}.tif", np.ones((8, 8), np.uint8))
    with pytest.raises(InputFileError, match="different band counts"):
        load_image_folder(tmp_path / "images", tmp_path / "masks")
    one_class = [
        Sample("a", np.zeros((2, 8, 8)), np.ones((8, 8), np.int64)),
        Sample("b", np.zeros((2, 8, 8)), np.ones((8, 8), np.int64)),
    ]
    with pytest.raises(TrainingDataError, match="only class"):
        run_to_end(simulate(one_class, SimulationConfig()))
    beyond = [Sample("a", np.zeros((2, 8, 8)), np.full((8, 8), 7, np.int64)), one_class[1]]
    with pytest.raises(TrainingDataError, match=r"values \[7\] beyond the classes \[1, 2\]"):
        run_to_end(simulate(beyond, SimulationConfig(), class_values=[1, 2]))


def test_reliability_on_a_known_case():
    truth = np.array([1, 1, 1, 1, 2, 2, 0])
    pred = np.array([1, 1, 1, 2, 2, 1, 1])
    conf = np.array([0.99, 0.97, 0.96, 0.96, 0.6, 0.55, 0.99])
    r = reliability(pred, truth, conf)
    assert r["thresholds"]["0.95"] == {"share": 4 / 6, "accuracy": 0.75}
    assert r["thresholds"]["0.5"]["accuracy"] == pytest.approx(4 / 6)
    assert r["ece"] > 0


def test_simulate_active_learning_spends_the_budget_on_ranked_items(tiny_set, tmp_path):
    samples = load_image_folder(tiny_set / "images", tiny_set / "masks")
    reports = {}
    for strategy in ("hise", "random"):
        cfg = SimulationConfig(
            iterations=3, seed_images=1, scribble_fraction=0.03, strategy=strategy,
            budget=150, tile=48, pseudo="routed", test_fraction=0.25,
        )  # fmt: skip
        cfg.train.steps, cfg.train.warm_steps = 10, 4
        reports[strategy] = run_to_end(simulate(samples, cfg))
    for strategy, report in reports.items():
        rows = report["iterations"]
        # the model of iteration 1 saw only the seed image's strokes; each later one more
        assert rows[0]["human_pixels"] > 0
        for a, b in itertools.pairwise(rows):
            assert b["human_pixels"] == a["human_pixels"] + a["human_pixels_added"]
        for row in rows:
            # the budget is spent (a stroke may overshoot it a little), on ranked tiles
            assert 100 <= row["human_pixels_added"] <= 150 + 60, strategy
            assert row["chosen"] and all("@" in key for key in row["chosen"])
            assert row["gamma"] == pytest.approx(0.3 + 0.1 * (row["iteration"] - 1))
        # the simulated human never strokes the same tile twice
        chosen = [k for row in rows for k in row["chosen"]]
        assert len(chosen) == len(set(chosen))
        # the difficulty report ranks every pool tile (3 images × 2 × 2 tiles)
        assert len(report["difficulty"]) == 12
        assert sorted(r["rank"] for r in report["difficulty"]) == list(range(1, 13))
    taus = [r["tau_l"] for r in reports["hise"]["difficulty"]]
    assert taus == sorted(taus)  # hise: lowest local consistency first
    with pytest.raises(ValueError, match="unknown strategy"):
        run_to_end(simulate(samples, SimulationConfig(strategy="best", iterations=1)))
