"""``auto``: the model a project's strokes show to be best, scored on strokes it did not see."""

from __future__ import annotations

import re

import numpy as np
import pytest

from napari_hitl.cli import main
from napari_hitl.core.evaluation.scribbles import sparse_scribbles
from napari_hitl.core.learning.auto import AUTO_CANDIDATES, choose_model, stroke_folds
from napari_hitl.core.learning.config import TrainConfig, TrainReport
from napari_hitl.core.learning.data import LabeledImage
from napari_hitl.core.loop import load_state, train_project
from napari_hitl.core.progress import Progress, run_to_end
from napari_hitl.core.sample.store import build_sample_store


class _Stub:
    """A classifier whose skill is known: ``"truth"`` reads the class from band 0 (always right),
    ``"memory"`` is right only on the pixels it trained on (class 0 elsewhere), ``"constant"``
    always says class 0, ``"im0,im3"`` is right on those images and says class 0 elsewhere."""

    def __init__(self, kind: str, skill: str) -> None:
        self.kind, self.skill = kind, skill
        self.class_values = [1, 2]
        self.trained = False
        self.seen: dict[str, np.ndarray] = {}

    def fit(self, images, config, cancel=None):
        for im in images:
            self.seen[im.name] = np.where(im.target >= 0, im.target, self.seen.get(im.name, -1))
        self.trained = True
        yield Progress(1, 1, "fit")
        return TrainReport(1, 0.0, 0.0, [1, 1], 0, 1.0)

    def logits(self, x, tile=None):
        name = f"im{int(x[1, 0, 0])}"
        if self.skill == "truth" or name in self.skill.split(","):
            cls = x[0].astype(int)
        elif self.skill == "memory":
            cls = np.maximum(self.seen.get(name, np.full(x.shape[1:], -1)), 0)
        else:
            cls = np.zeros(x.shape[1:], int)
        return np.eye(2, dtype=np.float32)[cls].transpose(2, 0, 1)


def _images(n: int, split_classes: bool = False) -> list[LabeledImage]:
    """``n`` images: class 1 on the top half, class 2 below (or left/right with
    ``split_classes``), band 0 the class index, band 1 the image number; strokes in both."""
    out = []
    for i in range(n):
        truth = np.zeros((32, 32), int)
        if split_classes:
            truth[:, 16:] = 1
        else:
            truth[16:] = 1
        x = np.stack([truth, np.full((32, 32), i)]).astype(np.float32)
        target = np.full((32, 32), -1)
        for r in (4, 12, 20, 28):
            target[r, 2:30] = truth[r, 2:30]
        out.append(LabeledImage(f"im{i}", x, target, (target >= 0).astype(np.float32)))
    return out


def _choose(images, skills: dict[str, str]):
    def make(kind):
        return _Stub(kind, skills[kind])

    return run_to_end(choose_model(images, TrainConfig(), make, candidates=tuple(skills)))


def test_the_model_right_on_unseen_images_wins_over_one_that_memorises_its_strokes():
    images = _images(4)
    choice = _choose(images, {"unet": "memory", "rf": "truth"})
    assert choice.kind == "rf" and choice.method == "images" and choice.folds == 3
    # perfect on its training strokes, but the held-out images are new to it: class 0 everywhere
    assert choice.scores == {"unet": pytest.approx(0.5), "rf": pytest.approx(1.0)}
    assert "auto chose rf" in choice.summary() and "held-out images" in choice.summary()


def test_the_folds_train_step_counts_even_under_a_time_budget():
    """A budget would cost every candidate and every fold its seconds: the folds ignore it."""
    budgets = []

    class Spy(_Stub):
        def fit(self, images, config, cancel=None):
            budgets.append(config.time_budget)
            return (yield from super().fit(images, config, cancel))

    run_to_end(choose_model(_images(3), TrainConfig(time_budget=30.0), lambda k: Spy(k, "truth")))
    assert len(budgets) == 3 * 3 and set(budgets) == {None}  # three candidates, three folds


def test_one_image_is_split_into_halves():
    choice = _choose(_images(1), {"unet": "memory", "patch-cnn": "truth"})
    assert choice.method == "halves" and choice.folds == 2
    assert choice.kind == "patch-cnn" and choice.scores["unet"] == pytest.approx(0.5)


def test_the_default_keeps_its_place_unless_clearly_beaten():
    choice = _choose(_images(3), {"unet": "truth", "rf": "truth"})
    assert choice.kind == "unet" and choice.scores["rf"] == choice.scores["unet"] == 1.0
    assert choice.note == ""  # a tie is no case for another model
    choice = _choose(_images(3), {"rf": "truth", "unet": "constant"})
    assert choice.kind == "rf"


def test_a_model_better_overall_but_not_on_every_fold_does_not_replace_the_default():
    images = _images(6)
    _, folds = stroke_folds(images)
    lucky = ",".join(im.name for _, score in folds[:2] for im in score)  # right on 2 folds of 3
    choice = _choose(images, {"unet": "constant", "rf": lucky})
    assert choice.scores["rf"] > choice.scores["unet"] + 0.1  # far better pooled...
    assert choice.kind == "unet"  # ...but level on the third fold: not a consistent win
    assert "rf was not better on 1 of 3 folds, so unet stays" in choice.summary()
    lucky_everywhere = ",".join(im.name for _, score in folds for im in score[:1])
    assert _choose(images, {"unet": "constant", "rf": lucky_everywhere}).kind == "rf"


def test_strokes_that_cannot_be_compared_keep_the_default():
    # one image whose left half holds one class and right half the other: neither half can train
    choice = _choose(_images(1, split_classes=True), {"unet": "constant", "rf": "truth"})
    assert choice.kind == "unet" and choice.method == "default" and choice.folds == 0
    assert "too few strokes" in choice.summary()


def test_windows_of_one_large_plane_are_its_parts():
    a = _images(1)[0]
    windows = [LabeledImage("im0", a.x, a.target, a.weight) for _ in range(4)]
    method, folds = stroke_folds(windows)
    assert method == "parts" and len(folds) == 3
    assert sorted(len(score) for _, score in folds) == [1, 1, 2]
    assert all(len(train) + len(score) == 4 for train, score in folds)


def test_folds_keep_the_windows_of_one_plane_together():
    a, b, c = _images(3)
    windows = [a, LabeledImage("im0", a.x, a.target, a.weight), b, c]
    method, folds = stroke_folds(windows)
    assert method == "images" and len(folds) == 3
    for train, score in folds:
        assert not {im.name for im in train} & {im.name for im in score}
        assert all(((im.target >= 0) <= im.extra["human"]).all() for im in score)


def test_auto_on_a_project_chooses_once_then_continues(tmp_path, capsys):
    store = build_sample_store(tmp_path / "p.zarr", shape=(64, 64), n_images=2)
    for name in store.image_names():
        gt = store.read_derived(name, "ground_truth")
        store.write_labels(name, sparse_scribbles(gt, 0.05, seed=1))
    path = str(store.path)
    assert main(["train", path, "--model", "auto", "--steps", "20", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "auto chose" in out and "balanced accuracy on held-out images" in out
    chosen = re.search(r"auto chose (\S+) ", out).group(1)
    assert chosen in AUTO_CANDIDATES and f"trained {chosen} (iteration 1, fresh)" in out
    assert all(f"{k} " in out for k in AUTO_CANDIDATES)  # every candidate's score is shown
    # the next Train continues the chosen model without comparing again
    cfg = TrainConfig(model="auto", steps=20, warm_steps=5, threads=1)
    report, state = run_to_end(train_project(store, cfg))
    assert report.model_choice is None and state.iteration == 2
    assert state.classifier.kind == chosen
    assert report.warm_start == (chosen != "rf")  # the forest always grows anew
    assert load_state(store).classifier.kind == chosen
