"""The corrective simulated user paints only where the labels are wrong or missing, inside the
true class, and her effort is counted exactly; the run stops once the pool is finished."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from napari_hitl.cli import main
from napari_hitl.core.evaluation.corrective import (
    correct_pool,
    error_mask,
    human_strokes,
)
from napari_hitl.core.evaluation.simulate import Sample, SimulationConfig, effort_summary, simulate
from napari_hitl.core.progress import run_to_end
from napari_hitl.core.sample.scene import make_sample_scene
from napari_hitl.core.store import PROVENANCE_HUMAN

MACHINE = PROVENANCE_HUMAN + 1  # provenance of a machine label of iteration 1


def _pool():
    """Two images: two classes in halves with a mask-0 band; a human stroke, wrong and right
    machine labels, and unlabeled pixels."""
    truths, labels, prov = [], [], []
    for k in range(2):
        t = np.ones((40, 50), np.int64)
        t[:, 25:] = 2
        t[18:22, :] = 0  # no ground truth
        lab = np.zeros(t.shape, np.uint16)
        pv = np.zeros(t.shape, np.uint16)
        lab[2:8, 2:20] = 1  # right machine labels
        pv[2:8, 2:20] = MACHINE
        lab[25:38, 28:48] = 1  # wrong machine labels (true class 2)
        pv[25:38, 28:48] = MACHINE
        lab[10:12, 5:15] = 1  # the person's stroke
        pv[10:12, 5:15] = PROVENANCE_HUMAN
        lab[20, 3] = 2 + k  # a machine label on mask 0 (no ground truth): not an error
        pv[20, 3] = MACHINE
        truths.append(t)
        labels.append(lab)
        prov.append(pv)
    return truths, labels, prov


def test_strokes_lie_only_on_wrong_or_missing_pixels_inside_the_true_class():
    truths, labels, prov = _pool()
    before = [(lab.copy(), pv.copy()) for lab, pv in zip(labels, prov, strict=True)]
    errors = [error_mask(t, lab, pv) for t, lab, pv in zip(truths, labels, prov, strict=True)]
    fix = correct_pool(truths, labels, prov, 700, np.random.default_rng(3))
    assert fix.pixels == 700 and fix.strokes >= 8
    painted_total = over_machine = 0
    for t, (lab0, pv0), lab, pv, err in zip(truths, before, labels, prov, errors, strict=True):
        painted = (lab != lab0) | (pv != pv0)
        painted_total += int(painted.sum())
        assert np.all(err[painted]), "a stroke touched a pixel that was already right"
        assert np.all(t[painted] > 0), "a stroke touched a pixel without ground truth"
        assert np.all(pv0[painted] != PROVENANCE_HUMAN), "a stroke went over a human label"
        assert np.all(lab[painted] == t[painted]) and np.all(pv[painted] == PROVENANCE_HUMAN)
        # kept at least 1 px inside the true class: no painted pixel touches another value
        for c in (1, 2):
            near_other = ndi.binary_dilation(t != c, np.ones((3, 3), bool))
            assert not np.any(painted & (t == c) & near_other)
        # the person's own labels are untouched
        h0 = pv0 == PROVENANCE_HUMAN
        assert np.array_equal(lab[h0], lab0[h0]) and np.all(pv[h0] == PROVENANCE_HUMAN)
        over_machine += int((painted & (lab0 != 0)).sum())
    assert painted_total == fix.pixels  # effort counted exactly
    assert fix.over_machine == over_machine > 0  # the wrong machine block got painted over


def test_largest_error_region_first_and_budget_exact():
    truths, labels, prov = _pool()
    labels[1][:] = 0
    prov[1][:] = 0
    truths[1][18:22, :25] = 1  # image 1: class 1 is one region of 1000 px, the largest
    labels[1][1:39, 1:24] = 2  # mostly wrong
    prov[1][1:39, 1:24] = MACHINE
    fix = correct_pool(truths, labels, prov, 30, np.random.default_rng(0))
    assert fix.pixels == 30 and fix.strokes == 1  # the stroke stops where the budget ends
    assert (prov[0] == PROVENANCE_HUMAN).sum() == 20  # only the person's old stroke
    new = prov[1] == PROVENANCE_HUMAN
    assert new.sum() == 30 and np.all(truths[1][new] == 1) and fix.over_machine == 30
    with pytest.raises(ValueError, match="budget"):
        correct_pool(truths, labels, prov, 0, np.random.default_rng(0))


def test_nothing_to_correct_paints_nothing():
    t = np.ones((30, 30), np.int64)
    t[:, 15:] = 2
    lab = t.astype(np.uint16)
    pv = np.full(t.shape, MACHINE, np.uint16)
    fix = correct_pool([t], [lab], [pv], 100, np.random.default_rng(0))
    assert fix.pixels == fix.strokes == 0 and np.all(pv == MACHINE)


def test_human_strokes_counts_components_per_class():
    lab = np.zeros((20, 20), np.uint16)
    pv = np.zeros_like(lab)
    lab[2, 2:10] = 1  # one stroke
    lab[3, 10:12] = 1  # touching it diagonally: the same stroke
    lab[10, 2:10] = 2
    lab[11, 2:10] = 1  # touches the class-2 stroke but is another class: its own stroke
    lab[18, 18] = 2  # a machine label, not a stroke
    pv[lab > 0] = PROVENANCE_HUMAN
    pv[18, 18] = MACHINE
    assert human_strokes(lab, pv) == 3


def _samples(n=5, size=80):
    out = []
    for i in range(n):
        s = make_sample_scene((size, size), 70 + i)
        out.append(Sample(f"s{i}", s.bands[[1, 2, 4, 7, 14]], s.ground_truth.astype(np.int64)))
    return out


def test_simulate_correct_counts_effort_cumulatively_and_stops_at_the_target():
    cfg = SimulationConfig(
        interaction="correct", iterations=3, seed_images=2, scribble_fraction=0.02, budget=300
    )
    cfg.train.steps, cfg.train.warm_steps = 8, 4
    samples = _samples()
    report = run_to_end(simulate(samples, cfg))
    rows = report["iterations"]
    assert len(rows) == 3
    for prev, row in zip([None, *rows[:-1]], rows, strict=True):
        assert row["corrected_pixels"] <= 300
        # the person's pixels grow by exactly what she painted; the model trained on the
        # pixels from before this iteration's corrections
        assert row["human_pixels_total"] == row["human_pixels"] + row["corrected_pixels"]
        if prev is not None:
            assert row["human_pixels"] == prev["human_pixels_total"]
            assert row["human_strokes"] == prev["human_strokes"] + row["correction_strokes"]
    assert rows[-1]["human_pixels_total"] > rows[0]["human_pixels"] > 0
    pool_gt = sum(int((s.truth > 0).sum()) for s in samples if s.name in report["config"]["pool"])
    for row in rows:
        assert row["human_fraction"] == pytest.approx(row["human_pixels_total"] / pool_gt)
    # a low target is reached at once: the run stops there and reports what it cost
    cfg.target = 0.02
    report = run_to_end(simulate(_samples(), cfg))
    assert len(report["iterations"]) == 1
    eff = report["effort"]
    row = report["iterations"][0]
    assert eff == {
        "target": 0.02,
        "human_fraction_to_target": row["human_fraction"],
        "human_strokes_to_target": row["human_strokes"],
        "iterations_to_target": 1,
    }


def test_effort_summary_when_never_reached():
    rows = [{"iteration": 1, "labeled_fraction": 0.99, "label_accuracy": 0.5,
             "human_fraction": 0.1, "human_strokes": 4}]  # fmt: skip
    assert effort_summary(rows, 0.95)["iterations_to_target"] is None


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("eff")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    for s in _samples(4, 64):
        tifffile.imwrite(root / "images" / f"{s.name}.tif", s.bands.astype(np.float32))
        tifffile.imwrite(root / "masks" / f"{s.name}.tif", s.truth.astype(np.uint8))
    return root


def test_cli_correct_writes_effort_and_plot(tiny_folder, tmp_path, capsys):
    out = tmp_path / "out"
    base = ["simulate", "--images", str(tiny_folder / "images"), "--masks",
            str(tiny_folder / "masks"), "--out", str(out)]  # fmt: skip
    rc = main([*base, "--interaction", "correct", "--iterations", "2", "--seed-images", "2",
               "--steps", "6", "--warm-steps", "3", "--budget", "200"])  # fmt: skip
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["effort"]) == {
        "target",
        "human_fraction_to_target",
        "human_strokes_to_target",
        "iterations_to_target",
    }
    assert report["config"]["interaction"] == "correct"
    assert (out / "effort.png").stat().st_size > 5000
    assert "pool" in capsys.readouterr().out
    for bad, msg in (
        (["--target", "0"], "--target must be in"),
        (["--target", "1.5"], "--target must be in"),
        (["--budget", "0"], "--budget must be a positive"),
        (["--budget", "-3"], "--budget must be a positive"),
    ):
        assert main([*base, "--interaction", "correct", *bad]) == 2
        err = capsys.readouterr().err.strip()
        assert msg in err and len(err.splitlines()) == 1


def test_cli_correct_on_one_class_masks_is_a_one_line_error(tmp_path, capsys):
    for d in ("images", "masks"):
        (tmp_path / d).mkdir()
    for n in "ab":
        tifffile.imwrite(tmp_path / "images" / f"{n}.tif", np.zeros((8, 8), np.float32))
        tifffile.imwrite(tmp_path / "masks" / f"{n}.tif", np.ones((8, 8), np.uint8))
    rc = main(["simulate", "--images", str(tmp_path / "images"), "--masks",
               str(tmp_path / "masks"), "--out", str(tmp_path / "o"), "--interaction",
               "correct"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "only class" in err and len(err.splitlines()) == 1
