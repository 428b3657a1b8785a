"""``auto``: the model a project's own strokes show to be best, chosen when a model starts.

No model wins everywhere: on the benchmark sets the U-Net (the default) leads or ties
(docs/benchmarks.md), but data unlike them may suit the paper's patch CNN or the ilastik-style
forest better. With
``--model auto`` each candidate of :data:`AUTO_CANDIDATES` is trained on part of the human
strokes and scored on the rest, and the winner is the project's model until a fresh start.

How the strokes are split matters more than anything else here. Strokes held out of the images
that trained a model flatter the forest (its features see the same surroundings; see "Ensembles"
in docs/learning-log.md), while most pixels a model will label lie in images it never saw. So:

* strokes in two or more images: whole images are held out, ``k = min(3, images)`` folds
  grouped by image (the windows of one large plane stay together);
* strokes in one large image read as several windows around them: the windows, likewise;
* strokes in one image only: its two halves (along its longer side) are the folds (spatial
  blocks).

The score is the **balanced accuracy** over the held-out human pixels — the mean over classes of
the share predicted right — pooled over the folds, for the classes the fold's training saw
(a class the training half never saw is no model's fault). The default keeps its place unless
another candidate beats it by :data:`AUTO_MARGIN` overall **and** on every fold: on dsb2018 the
patch CNN won two folds of three on two seeds of three and was the weaker model on one of them
(docs/learning-log.md) — at a small difference, which model is better depends on the draw of
strokes, and one fold that disagrees says so.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from napari_hitl.core.choices import AUTO_CANDIDATES, DEFAULT_MODEL
from napari_hitl.core.evaluation.metrics import balanced_accuracy, confusion
from napari_hitl.core.learning.base import Classifier
from napari_hitl.core.learning.config import TrainConfig
from napari_hitl.core.learning.data import LabeledImage, Normalization, human_mask
from napari_hitl.core.learning.registry import make_classifier
from napari_hitl.core.progress import CancelToken, Progress, relay

AUTO_MARGIN = 0.02  # balanced accuracy another model needs above the default to replace it
AUTO_FOLDS = 3  # image folds at most


@dataclass
class ModelChoice:
    """What ``auto`` chose and why.

    Attributes
    ----------
    kind
        The chosen model's name.
    scores
        Balanced accuracy of each candidate on the held-out strokes.
    method
        ``"images"`` (whole images held out), ``"parts"`` (windows of one large image held
        out), ``"halves"`` (one image, its two halves) or
        ``"default"`` (too few strokes to compare: the default model).
    folds
        Folds scored.
    note
        Why the default stayed although another candidate scored higher ("" otherwise).
    """

    kind: str
    scores: dict[str, float] = field(default_factory=dict)
    method: str = "default"
    folds: int = 0
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        """Plain JSON."""
        return {
            "kind": self.kind,
            "scores": {k: round(v, 4) for k, v in self.scores.items()},
            "method": self.method,
            "folds": self.folds,
            "note": self.note,
            "summary": self.summary(),
        }

    def summary(self) -> str:
        """One line for the CLI and the widget."""
        if self.method == "default":
            return f"auto chose {self.kind} (too few strokes in separate places to compare models)"
        where = {
            "images": "held-out images",
            "parts": "held-out parts of the image",
            "halves": "the other half of the image",
        }[self.method]
        ranked = ", ".join(
            f"{k} {v:.2f}" for k, v in sorted(self.scores.items(), key=lambda kv: -kv[1])
        )
        note = f"; {self.note}" if self.note else ""
        return f"auto chose {self.kind} (balanced accuracy on {where}: {ranked}{note})"


def _human(im: LabeledImage) -> np.ndarray:
    return human_mask(im) & (im.target >= 0)


def _masked(im: LabeledImage, keep: np.ndarray) -> LabeledImage:
    """``im`` with its labels outside ``keep`` removed."""
    target = np.where(keep, im.target, -1)
    weight = np.where(keep, im.weight, 0.0).astype(np.float32)
    extra = {**im.extra, "human": human_mask(im) & keep}
    return LabeledImage(im.name, im.x, target, weight, extra)


def stroke_folds(
    images: Sequence[LabeledImage], seed: int = 0
) -> tuple[str, list[tuple[list[LabeledImage], list[LabeledImage]]]]:
    """Training and scoring images of each fold, and the method (see :class:`ModelChoice`).

    Parameters
    ----------
    images
        The labeled images of one Train.
    seed
        Seed of the assignment of images to folds.

    Returns
    -------
    method, folds
        ``folds`` is a list of ``(train, score)`` image lists; ``score`` images keep only their
        human pixels. Empty (method ``"default"``) without human strokes.
    """
    groups: dict[str, list[int]] = {}
    for i, im in enumerate(images):
        if _human(im).any():
            groups.setdefault(im.name, []).append(i)
    method = "images"
    if len(groups) == 1 and len(next(iter(groups.values()))) >= 2:
        # one large plane read as windows around its strokes: the windows are the parts
        method, groups = "parts", {str(i): [i] for i in next(iter(groups.values()))}
    if len(groups) >= 2:
        names = list(groups)
        order = np.random.default_rng(seed).permutation(len(names))
        k = min(AUTO_FOLDS, len(names))
        folds = []
        for f in range(k):
            held = {i for j in order[f::k] for i in groups[names[j]]}
            train = [im for i, im in enumerate(images) if i not in held]
            score = [_masked(images[i], _human(images[i])) for i in sorted(held)]
            folds.append((train, score))
        return method, folds
    if not groups:
        return "default", []
    (i,) = next(iter(groups.values()))
    im = images[i]
    h, w = im.target.shape[-2:]
    first = np.zeros(im.target.shape, bool)
    if w >= h:
        first[..., : w // 2] = True
    else:
        first[..., : h // 2, :] = True
    folds = []
    for keep in (first, ~first):
        train = [_masked(im, keep)] + [x for j, x in enumerate(images) if j != i]
        folds.append((train, [_masked(im, ~keep & _human(im))]))
    return "halves", folds


def choose_model(
    images: Sequence[LabeledImage],
    config: TrainConfig,
    make: Any,
    candidates: Sequence[str] = AUTO_CANDIDATES,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, ModelChoice]:
    """Train every candidate on each fold's strokes and score it on the held-out ones.

    Parameters
    ----------
    images
        The labeled images of the Train (as the classifiers' ``fit`` takes them).
    config
        The training settings (its model name is ignored; no strokes are held out for
        calibration and no novelty gate is fitted inside the folds — they do not move the
        argmax the score reads; the folds train the models' step counts even under a
        ``time_budget``, which would otherwise cost every candidate and fold the budget).
    make
        ``make(kind)`` → a fresh, untrained classifier of that model.
    candidates
        Model names to compare; the default (``unet``, else the first) keeps its place unless
        another beats it by :data:`AUTO_MARGIN` in the pooled score and on every fold.
    cancel
        Stops at the next training step.

    Returns
    -------
    ModelChoice
        A progress generator; its return value is the choice.
    """
    method, folds = stroke_folds(images, config.seed)
    cfg = replace(config, holdout_fraction=0.0, novelty_gate=0.0, tta=False, time_budget=None)
    default = DEFAULT_MODEL if DEFAULT_MODEL in candidates else candidates[0]
    k = len(make(candidates[0]).class_values)
    pooled = {kind: np.zeros((k + 1, k + 1), np.int64) for kind in candidates}
    fold_scores: list[dict[str, float]] = []
    jobs = len(folds) * len(candidates)
    for f, (train, score) in enumerate(folds):
        trained = _trained_classes(train, k)
        held = [(im, _human(im) & trained[np.maximum(im.target, 0)]) for im in score]
        held = [(im, m) for im, m in held if m.any()]
        if trained.sum() < 2 or not held:
            continue  # fewer than two classes to train on, or nothing of theirs to score
        fold_scores.append({})
        for c, kind in enumerate(candidates):
            clf: Classifier = make(kind)
            label = f"auto: fold {f + 1}/{len(folds)}, {kind}"
            yield from relay(clf.fit(train, cfg, cancel), f * len(candidates) + c, jobs, label)
            cm = sum(  # class indices + 1: value 0 is "no truth" to confusion()
                confusion(clf.logits(im.x).argmax(0)[m] + 1, im.target[m] + 1, k) for im, m in held
            )
            pooled[kind] += cm
            fold_scores[-1][kind] = balanced_accuracy(cm)
    if not fold_scores:
        return ModelChoice(default)
    scores = {kind: balanced_accuracy(pooled[kind]) for kind in candidates}
    best = max(candidates, key=lambda kind: scores[kind])
    lost = sum(fs[best] <= fs[default] for fs in fold_scores)
    note = ""
    if best != default and scores[best] < scores[default] + AUTO_MARGIN:
        note = f"{best} was less than {AUTO_MARGIN:g} better, so {default} stays"
    elif best != default and lost:
        note = f"{best} was not better on {lost} of {len(fold_scores)} folds, so {default} stays"
    if note:
        best = default
    return ModelChoice(best, scores, method, len(fold_scores), note)


def _trained_classes(train: Sequence[LabeledImage], k: int) -> np.ndarray:
    """Whether each of the ``k`` classes has a labeled pixel in ``train``."""
    seen = np.zeros(k, bool)
    for im in train:
        seen[np.unique(im.target[im.target >= 0])] = True
    return seen


def auto_classifier(
    images: Sequence[LabeledImage],
    config: TrainConfig,
    normalization: Normalization,
    class_values: Sequence[int],
    class_names: Sequence[str],
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, tuple[Classifier, ModelChoice]]:
    """A fresh, untrained classifier of the model :func:`choose_model` picks, and the choice.

    A progress generator (the candidates' trainings); its return value is
    ``(classifier, choice)``.
    """

    def make(name: str) -> Classifier:
        return make_classifier(name, normalization, class_values, class_names)

    choice = yield from choose_model(images, config, make, cancel=cancel)
    return make(choice.kind), choice
