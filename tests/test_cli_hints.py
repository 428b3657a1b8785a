"""The ``hint`` and ``guide-eval`` commands (test-time guiding, seed 002)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_hitl.cli import main
from napari_hitl.core.evaluation.scribbles import sparse_scribbles
from napari_hitl.core.learning.net import TrainConfig
from napari_hitl.core.loop import load_state, predict_project_image, train_project
from napari_hitl.core.progress import run_to_end
from napari_hitl.core.sample.scene import make_sample_scene
from napari_hitl.core.sample.store import build_sample_store
from napari_hitl.core.store import PROVENANCE_HUMAN, ProjectStore


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    for i in range(4):
        s = make_sample_scene((48, 48), seed=i)
        tifffile.imwrite(root / "images" / f"s{i}.tif", s.bands[[1, 2, 4, 7, 14]])
        tifffile.imwrite(root / "masks" / f"s{i}.tif", s.ground_truth)
    return root


def test_guide_eval_writes_the_report_on_a_tiny_set(tiny_set, tmp_path, capsys):
    out = tmp_path / "eval"
    rc = main(
        [
            "guide-eval", "--images", str(tiny_set / "images"), "--masks",
            str(tiny_set / "masks"), "--out", str(out), "--questions", "5",
            "--train-steps", "15", "--seed", "0",
        ]
    )  # fmt: skip
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert report["questions"] == [0, 1, 5]
    assert len(report["eval_images"]) == 2 and len(report["train_images"]) == 2
    for variant in ("guided", "finetune"):
        assert len(report[variant]["miou"]) == 3
        assert all(0 <= v <= 1 for v in report[variant]["pixel_accuracy"])
    # both start from the same network: equal scores before any question
    assert report["guided"]["miou"][0] == report["finetune"]["miou"][0]
    for row in report["per_image"]:
        asked = [tuple(q[:2]) for q in row["questions"]]
        assert len(asked) == 5 and len(set(asked)) == 5  # five different pixels
    table = (out / "report.md").read_text()
    assert "| #questions | 0 | 1 | 5 |" in table and "guided" in table
    assert "wrote" in capsys.readouterr().out


def test_guide_eval_refuses_bad_input(tiny_set, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["guide-eval", "--images", str(empty), "--masks", str(empty),
                 "--out", str(tmp_path / "o")]) == 2  # fmt: skip
    assert "no image has a mask" in capsys.readouterr().err


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    store = build_sample_store(tmp_path_factory.mktemp("h") / "p.zarr", (96, 96), n_images=1)
    gt = store.read_derived("sample", "ground_truth")
    store.write_labels("sample", sparse_scribbles(gt, 0.03, seed=0))
    run_to_end(train_project(store, TrainConfig(steps=30)))
    return store


def test_hint_cli_points_commands_accept(project, tmp_path, capsys):
    path = str(project.path)
    state = load_state(project)
    plain = run_to_end(predict_project_image(project, "sample", state, write=False))
    human_before = ProjectStore.open(path).labels("sample").copy()
    margin = np.where(human_before == 0, plain.margin, np.inf)
    r, c = np.unravel_index(np.argmin(margin), margin.shape)
    k = int(np.argsort(plain.probabilities[:, r, c])[-2])
    name = state.classifier.class_names[k]
    out = tmp_path / "guided.npy"
    rc = main(["hint", path, "--image", "sample", "--point", f"{r},{c},{name}",
               "--out", str(out)])  # fmt: skip
    assert rc == 0
    text = capsys.readouterr().out
    assert "guided sample by 1 point(s)" in text and "pixels changed class" in text
    guided = np.load(out)
    assert guided[r, c] == state.classifier.class_values[k]
    # read-only without --accept: the labels did not change
    np.testing.assert_array_equal(ProjectStore.open(path).labels("sample"), human_before)

    top = plain.labels[: plain.labels.shape[0] // 3]
    common = int(np.bincount(top.ravel()).argmax())
    cls = state.classifier.class_names[state.classifier.class_values.index(common)]
    rc = main(["hint", path, "--image", "sample", "--command", f"remove {cls} in the top",
               "--accept", "--threshold", "0.5"])  # fmt: skip
    assert rc == 0
    text = capsys.readouterr().out
    assert f"remove {cls} in top" in text and "accepted" in text
    after = ProjectStore.open(path)
    human = human_before > 0
    np.testing.assert_array_equal(after.labels("sample")[human], human_before[human])
    assert (after.provenance("sample")[human] == PROVENANCE_HUMAN).all()
    assert (after.labels("sample") > 0).sum() > human.sum()
    assert load_state(after).model_hash == state.model_hash  # the weights never change
    assert main(["undo", path, "--image", "sample"]) == 0
    np.testing.assert_array_equal(ProjectStore.open(path).labels("sample"), human_before)


def test_hint_cli_errors(project, capsys):
    path = str(project.path)
    assert main(["hint", path, "--image", "sample", "--command", "find watr in top lft"]) == 2
    assert "did you mean 'water'" in capsys.readouterr().err
    assert main(["hint", path, "--image", "sample"]) == 2
    assert "give hints" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["hint", path, "--image", "sample", "--point", "3,4"])
    assert "ROW,COL,CLASS" in capsys.readouterr().err
