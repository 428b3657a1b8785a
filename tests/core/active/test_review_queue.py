"""The queue on a project store: ranking, routes, done marks, machine annotation, questions,
suspect labels, the CLI."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from napari_hitl.cli import main
from napari_hitl.core.active.review_queue import (
    answer_question,
    background_classes,
    machine_annotate,
    mark_done,
    project_questions,
    project_suspects,
    rank_project,
)
from napari_hitl.core.active.strategies import Schedule, local_consistency
from napari_hitl.core.evaluation.scribbles import sparse_scribbles
from napari_hitl.core.learning.data import TrainingDataError
from napari_hitl.core.learning.net import TrainConfig
from napari_hitl.core.loop import current_prediction, load_state, train_project
from napari_hitl.core.loop.accept import store_undo
from napari_hitl.core.progress import run_to_end
from napari_hitl.core.sample.store import build_sample_store
from napari_hitl.core.store import PROVENANCE_HUMAN

FAST = TrainConfig(steps=40, warm_steps=10)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    store = build_sample_store(tmp_path_factory.mktemp("q") / "p.zarr", (96, 96), n_images=2)
    gt = store.read_derived("sample_00", "ground_truth")
    store.write_labels("sample_00", sparse_scribbles(gt, 0.04, seed=0))
    run_to_end(train_project(store, FAST))
    return store


def test_rank_tiles_routes_and_done(trained):
    store = trained
    with pytest.raises(TrainingDataError, match="train first"):
        run_to_end(rank_project(build_sample_store(store.path.parent / "empty.zarr", (32, 32))))
    sched = Schedule(beta0=0.9, gamma0=0.25)
    ranking = run_to_end(rank_project(store, "hise", tile=48, schedule=sched))
    assert ranking.beta == 0.9 and ranking.gamma == 0.25  # first model: t = 0
    assert len(ranking.items) == 8  # 2 images × 2 × 2 tiles
    # every image now has a current prediction (ranking predicted what was missing)
    state = load_state(store)
    pred = current_prediction(store, "sample_01", state)
    assert pred is not None
    # τ_l of a tile equals the formula on the stored arrays
    item = next(it for it in ranking.items if it.image == "sample_01" and it.box[0] == 48)
    r0, r1, c0, c1 = item.box
    open_ = store.labels("sample_01")[r0:r1, c0:c1] == 0
    want = local_consistency(
        pred.confidence[r0:r1, c0:c1], pred.labels[r0:r1, c0:c1], 0.9, [], open_
    )
    assert item.stats.tau_l == pytest.approx(want)
    taus = [it.stats.tau_l for it in ranking.items]
    assert taus == sorted(taus)  # hise: low local consistency first
    assert [it.route for it in ranking.items] == ["human"] * 6 + ["machine"] * 2
    # done items go last and stay done in the store
    first = ranking.items[0].key
    mark_done(store, [first])
    again = run_to_end(rank_project(store, "hise", tile=48, schedule=sched))
    assert again.items[-1].key == first and again.items[-1].route == "done"
    assert len(again.by_route("machine")) == 2  # round(0.25 × 7 open items)
    mark_done(store, [first], done=False)
    # the difficulty report
    path = ranking.write_csv(store.path.parent / "difficulty.csv")
    rows = list(csv.DictReader(path.open()))
    assert [int(r["rank"]) for r in rows] == list(range(1, 9))
    assert {"tau_l", "route", "uncertain_fraction", "image", "row0"} <= set(rows[0])
    # other strategies rank the same items
    for strategy in ("entropy", "margin", "kcenter", "gmm", "random"):
        r = run_to_end(rank_project(store, strategy, tile=48))
        assert sorted(it.key for it in r.items) == sorted(it.key for it in ranking.items)


def test_background_classes_setting(trained):
    assert background_classes(trained) == []  # no class named background in the sample
    trained.set_setting("background_classes", [1])
    try:
        assert background_classes(trained) == [1]
    finally:
        trained.set_setting("background_classes", None)
    assert trained.setting("background_classes") is None


def test_machine_annotation_only_in_machine_items(trained):
    store = trained
    ranking = run_to_end(rank_project(store, "hise", tile=48, schedule=Schedule(gamma0=0.5)))
    human_before = {n: store.labels(n) for n in store.image_names()}
    records = machine_annotate(store, ranking, delta=0.6)
    assert sum(r.count for r in records.values()) > 0
    machine_boxes = {(it.image, it.box) for it in ranking.by_route("machine")}
    for name in store.image_names():
        changed = store.labels(name) != human_before[name]
        allowed = np.zeros(changed.shape, bool)
        for img, (r0, r1, c0, c1) in machine_boxes:
            if img == name:
                allowed[r0:r1, c0:c1] = True
        assert not (changed & ~allowed).any()  # only machine items got pseudo-labels
        h = human_before[name] > 0
        assert np.array_equal(store.labels(name)[h], human_before[name][h])  # human untouched
    for key in records:
        store_undo(store, key)
    for name in store.image_names():
        np.testing.assert_array_equal(store.labels(name), human_before[name])


def test_questions_and_answers(trained):
    store = trained
    qs = project_questions(store, "sample_00", n=4, min_distance=10)
    assert len(qs) == 4
    labels = store.labels("sample_00")
    pred = current_prediction(store, "sample_00", load_state(store))
    for q in qs:
        assert labels[q.row, q.col] == 0
        assert q.margin == pytest.approx(float(pred.margin[q.row, q.col]))
        assert q.first != q.second
    pts = np.array([(q.row, q.col) for q in qs])
    d = np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1))
    assert d[np.triu_indices(4, 1)].min() >= 10
    # the smallest margin among unlabeled pixels is the first question
    open_margin = np.where(labels == 0, pred.margin, np.inf)
    assert qs[0].margin == pytest.approx(float(open_margin.min()))
    q = qs[0]
    answer_question(store, "sample_00", q.row, q.col, q.second)
    assert store.labels("sample_00")[q.row, q.col] == q.second
    assert store.provenance("sample_00")[q.row, q.col] == PROVENANCE_HUMAN
    assert (q.row, q.col) not in {(x.row, x.col) for x in project_questions(store, "sample_00", 4)}
    with pytest.raises(ValueError, match="not one of the project's classes"):
        answer_question(store, "sample_00", 0, 0, 42)
    store.write_labels("sample_00", labels)  # back as it was


def test_suspects_find_a_wrong_human_patch(trained):
    store = trained
    labels = store.labels("sample_00")
    pred = current_prediction(store, "sample_00", load_state(store))
    # paint a confidently predicted unlabeled patch with another class, as a slip of the brush
    sure = (pred.confidence > 0.9) & (labels == 0)
    r, c = np.argwhere(sure[5:-5, 5:-5])[0] + 5
    true = int(pred.labels[r, c])
    wrong = 1 if true != 1 else 2
    bad = labels.copy()
    patch = np.zeros_like(sure)
    patch[r - 1 : r + 2, c - 1 : c + 2] = True
    patch &= sure & (pred.labels == true)
    bad[patch] = wrong
    store.write_labels("sample_00", bad)
    try:
        found = project_suspects(store, threshold=0.9)
        hit = [s for s in found if s.image == "sample_00" and s.label == wrong]
        assert hit and hit[0].predicted == true
        rr, cc = hit[0].centre
        assert abs(rr - r) <= 1.5 and abs(cc - c) <= 1.5
    finally:
        store.write_labels("sample_00", labels)


def test_cli_rank_ask_suspects(trained, tmp_path, capsys):
    path = str(trained.path)
    assert main(["rank", path, "--strategy", "margin", "--tile", "48",
                 "--csv", str(tmp_path / "d.csv")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "sample_00@" in out and "human" in out and (tmp_path / "d.csv").exists()
    assert main(["ask", path, "--image", "sample_01", "-n", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count("row") >= 3
    assert main(["suspects", path, "--threshold", "0.99"]) == 0
    assert "suspect" in capsys.readouterr().out
