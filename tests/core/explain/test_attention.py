"""Explanations and guidance over a project store, and the ``explain`` / ``guide`` commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_hitl.cli import main
from napari_hitl.core.errors import StoreError
from napari_hitl.core.evaluation.scribbles import sparse_scribbles
from napari_hitl.core.explain.gradcam import ExplainError, Region
from napari_hitl.core.explain.project import (
    BEFORE_GUIDANCE,
    ClickSet,
    explain_project_image,
    guide_project,
    load_clicks,
    prepare_targets,
    revert_guidance,
    save_clicks,
)
from napari_hitl.core.explain.steering import SteerConfig
from napari_hitl.core.learning.net import TrainConfig
from napari_hitl.core.learning.registry import list_checkpoints
from napari_hitl.core.loop import load_state, predict_project_image, train_project
from napari_hitl.core.progress import run_to_end
from napari_hitl.core.sample.store import build_sample_store

BUILDING = 4


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    store = build_sample_store(tmp_path_factory.mktemp("x") / "p.zarr", (128, 128), n_images=1)
    gt = store.read_derived("sample", "ground_truth")
    store.write_labels("sample", sparse_scribbles(gt, 0.05, seed=0))
    run_to_end(train_project(store, TrainConfig(steps=60)))
    pred = run_to_end(predict_project_image(store, "sample"))
    ys, xs = np.nonzero(pred.labels == BUILDING)
    assert ys.size, "the sample model predicts no building"
    return store, (int(ys[ys.size // 2]), int(xs[xs.size // 2])), pred.labels


def test_explain_a_predicted_segment(project):
    store, (r, c), labels = project
    exp = run_to_end(
        explain_project_image(store, "sample", "building", region=Region("segment", point=(r, c)))
    )
    assert exp.class_value == BUILDING and exp.class_name == "building"
    assert exp.mask[r, c] and (labels[exp.mask] == BUILDING).all()
    assert exp.cam.map.shape == (128, 128)
    e0, e1, e2, e3 = exp.cam.extent
    outside = np.ones((128, 128), bool)
    outside[e0:e1, e2:e3] = False
    assert not exp.cam.map[outside].any()  # nothing outside the region's reach
    assert exp.cam.map[exp.mask].mean() > exp.cam.map[~outside & ~exp.mask].mean()
    attr = exp.attribution
    assert attr is not None and attr.maps.shape == (15, 128, 128)
    assert attr.score > attr.baseline_score  # the bands explain why it is a building
    assert abs(attr.shares).sum() == pytest.approx(1.0)


def test_explain_refuses_bad_requests(project):
    store, (_r, _c), labels = project
    with pytest.raises(ExplainError, match="no class 'boat'"):
        run_to_end(explain_project_image(store, "sample", "boat"))
    other = tuple(np.argwhere(labels != BUILDING)[0])
    with pytest.raises(ExplainError, match="click inside a segment"):
        run_to_end(
            explain_project_image(
                store, "sample", "building", region=Region("segment", point=other)
            )
        )


def test_guide_revert_and_clicks(project, tmp_path):
    store, (r, c), _labels = project
    labels_before = store.labels("sample").copy()
    state = load_state(store)
    region = f"segment:{r},{c}"
    exp = run_to_end(
        explain_project_image(store, "sample", "building", region=Region.parse(region))
    )
    e0, _e1, e2, _e3 = exp.cam.extent
    neg = (e0 + 2, e2 + 2)  # a corner of where the map is defined: context, not the building
    sets = [ClickSet("sample", "building", None, region, [(r, c)], [neg], True)]
    prepared = run_to_end(prepare_targets(store, sets))
    assert prepared.negative_masks[0][neg]
    report, new = run_to_end(guide_project(store, sets, SteerConfig(steps=5)))
    assert new.iteration == state.iteration + 1 and new.model_hash != state.model_hash
    assert BEFORE_GUIDANCE in list_checkpoints(store)
    b, a = report.before[0], report.after[0]
    assert a.distance + a.negative_share < b.distance + b.negative_share
    np.testing.assert_array_equal(store.labels("sample"), labels_before)
    back = revert_guidance(store)
    assert back.model_hash == state.model_hash
    assert load_state(store).model_hash == state.model_hash
    assert BEFORE_GUIDANCE not in list_checkpoints(store)
    with pytest.raises(StoreError, match="no guidance to revert"):
        revert_guidance(store)
    save_clicks(store, [*sets, ClickSet("sample", "water", 0)])  # the empty one is dropped
    assert [s.to_json() for s in load_clicks(store)] == [sets[0].to_json()]


def test_cli_explain_and_guide(project, tmp_path, capsys):
    store, (r, c), _ = project
    path = str(store.path)
    out = tmp_path / "cam.tif"
    csv_path = tmp_path / "bands.csv"
    rc = main(
        [
            "explain", path, "--image", "sample", "--class", "building",
            "--region", f"segment:{r},{c}", "--out", str(out), "--bands-csv", str(csv_path),
            "--attribution", "occlusion",
        ]
    )  # fmt: skip
    assert rc == 0
    cam = tifffile.imread(out)
    assert cam.shape == (128, 128) and cam.max() == pytest.approx(1.0)
    text = capsys.readouterr().out
    assert "Grad-CAM of class 4 'building'" in text and "band attribution (occlusion)" in text
    assert len(csv_path.read_text().splitlines()) == 16
    assert main(["explain", path, "--image", "sample", "--class", "x", "--out", str(out)]) == 2
    assert "no class 'x'" in capsys.readouterr().err

    report = tmp_path / "g.json"
    rc = main(
        [
            "guide", path, "--image", "sample", "--class", "building",
            "--region", f"segment:{r},{c}", "--positive", f"{r},{c}", "--steps", "3",
            "--report", str(report),
        ]
    )  # fmt: skip
    assert rc == 0
    assert json.loads(report.read_text())["steps"] == 3
    assert "barycenter distance" in capsys.readouterr().out
    assert main(["guide", path, "--revert"]) == 0
    save_clicks(
        store, [ClickSet("sample", "building", None, f"segment:{r},{c}", [(r, c)], [], True)]
    )
    assert main(["guide", path, "--steps", "2"]) == 0  # the confirmed clicks of the store
    assert "guided 1 image(s) in 2 steps" in capsys.readouterr().out
    assert main(["guide", path, "--revert"]) == 0
    save_clicks(store, [])
    assert main(["guide", path]) == 2  # no clicks given and none confirmed
    assert "no clicks given" in capsys.readouterr().err
