"""The 20-questions evaluation of test-time guiding (Guide Me, §4.1 and Table 1).

On every held-out image the guided network asks, one question at a time, the class of the
pixel with the smallest margin between its two most probable classes (the pixel most likely to
flip), gets the answer from the ground truth, and is guided by all answers so far (warm: the
guide continues from its vectors). The data set's mIoU and pixel accuracy are recorded after
0, 1, 5, 10, 15 and 20 questions (confusion matrices summed over the images, as for PASCAL VOC).

Baseline, on the very same questions and answers: instead of the guiding vectors, fine-tune the
*weights* of the network's tail (every layer after the guiding block), with the same optimizer,
number of steps, energy and stopping rule (stop once every answer is met). Both start from the
same trained network on every image.
"""

from __future__ import annotations

import json
import time
from collections.abc import Generator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_hitl.core.evaluation.metrics import confusion, scores
from napari_hitl.core.evaluation.simulate import Sample
from napari_hitl.core.hints.block import hint_windows
from napari_hitl.core.hints.guide import GuideConfig, Hints, ImageGuide, descend
from napari_hitl.core.jsonable import Jsonable
from napari_hitl.core.learning.data import (
    TrainingDataError,
    make_labeled_image,
    normalization_from_bands,
)
from napari_hitl.core.learning.net import TrainConfig
from napari_hitl.core.learning.prediction import Prediction
from napari_hitl.core.learning.registry import make_classifier
from napari_hitl.core.progress import CancelToken, Progress, relay, run_to_end
from napari_hitl.core.store import PROVENANCE_HUMAN

CHECKPOINTS = (0, 1, 5, 10, 15, 20)


@dataclass
class QuestionsConfig(Jsonable):
    """Settings of ``napari-hitl guide-eval``.

    Attributes
    ----------
    questions
        Questions per image (the paper: 20).
    model
        Network trained on the training part (``unet`` or ``patch-cnn``).
    train_fraction
        Share of the images the model is trained on; the rest are asked questions.
    max_eval
        At most this many held-out images are evaluated (``None``: all).
    guide
        The guide's optimizer settings (per question).
    finetune_lr
        Learning rate of the weight fine-tuning baseline (same steps and momentum).
    seed
        Split, training and sampling seed.
    """

    questions: int = 20
    model: str = "unet"
    train_fraction: float = 0.5
    max_eval: int | None = None
    guide: GuideConfig = field(default_factory=GuideConfig)
    finetune_lr: float = 1e-2
    seed: int = 0
    train: TrainConfig = field(default_factory=TrainConfig)

    def checkpoints(self) -> list[int]:
        """Question counts at which the scores are recorded."""
        return sorted({c for c in CHECKPOINTS if c <= self.questions} | {self.questions})


def next_question(pred: Prediction, truth: np.ndarray, asked: np.ndarray) -> tuple[int, int] | None:
    """The pixel with the smallest margin between the top two classes, among pixels with a
    ground truth that were not asked yet (``None`` when none is left)."""
    margin = np.where((truth > 0) & ~asked, pred.margin, np.inf)
    flat = int(np.argmin(margin))
    if not np.isfinite(margin.flat[flat]):
        return None
    return divmod(flat, margin.shape[1])


class _TailFinetune:
    """The baseline: fine-tune the tail's weights on the answers (same energy and steps)."""

    def __init__(self, guide: ImageGuide, lr: float, config: GuideConfig) -> None:
        self.guide = guide  # a fresh ImageGuide: its split's net is a private copy
        self.split = guide.split
        net = self.split.net
        net.requires_grad_(True)
        self.opt = torch.optim.SGD(
            [p for p in net.parameters() if p.requires_grad], lr=lr, momentum=config.momentum
        )
        self.config = config

    def fit(self, hints: Hints) -> None:
        g = self.guide
        win = hint_windows(self.split, g.x, np.stack([hints.rows, hints.cols], 1),
                           self.config.block_size)  # fmt: skip
        job = descend(
            self.opt, lambda: win.logits(self.split, None), hints, g._log_prior,
            g._temperature, self.config,
        )  # fmt: skip
        run_to_end(job)

    def predict(self) -> Prediction:
        return run_to_end(self.guide.predict_job(guided=False))


def run_questions(
    clf: Any,
    samples: Sequence[Sample],
    xs: Sequence[np.ndarray],
    config: QuestionsConfig,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, dict[str, Any]]:
    """Ask the questions on every image; a generator returning the report's result part."""
    values = list(clf.class_values)
    n = max(values)
    lookup = np.zeros(n + 1, np.int64)
    lookup[values] = np.arange(len(values))
    marks = config.checkpoints()
    cms = {
        v: {c: np.zeros((n + 1, n + 1), np.int64) for c in marks} for v in ("guided", "finetune")
    }
    per_image: list[dict[str, Any]] = []
    total = len(samples) * config.questions
    for i, (s, x) in enumerate(zip(samples, xs, strict=True)):
        valid = np.isfinite(s.bands).all(0)
        guide = ImageGuide(clf, x, valid, config.guide.layer, config.guide.knots)
        tune = _TailFinetune(ImageGuide(clf, x, valid, config.guide.layer), config.finetune_lr,
                             config.guide)  # fmt: skip
        pred = run_to_end(guide.predict_job(cancel=cancel))
        tuned = pred
        asked = np.zeros(s.truth.shape, bool)
        answers = Hints.empty()
        row: dict[str, Any] = {"image": s.name, "guided": {}, "finetune": {}, "questions": []}
        t_guide = t_tune = 0.0
        for q in range(config.questions + 1):
            if q in marks:
                for variant, p in (("guided", pred), ("finetune", tuned)):
                    cm = confusion(p.labels, s.truth, n)
                    cms[variant][q] += cm
                    row[variant][str(q)] = scores(cm)
            if q == config.questions:
                break
            if cancel is not None:
                cancel.raise_if_cancelled()
            pixel = next_question(pred, s.truth, asked)
            if pixel is None:  # every pixel with a ground truth was asked: nothing changes
                continue
            asked[pixel] = True
            answer = int(lookup[int(s.truth[pixel])])
            row["questions"].append([int(pixel[0]), int(pixel[1]), values[answer]])
            new = Hints.points([pixel[0]], [pixel[1]], [answer])
            answers = answers + new
            t0 = time.perf_counter()
            # sub-jobs run to the end here (each well under a second; they check ``cancel``),
            # the evaluation reports one step per question
            report = run_to_end(guide.fit_job(new, config.guide, cancel))
            pred = run_to_end(guide.predict_job(cancel=cancel))
            t_guide += time.perf_counter() - t0
            t0 = time.perf_counter()
            tune.fit(answers)
            tuned = tune.predict()
            t_tune += time.perf_counter() - t0
            yield Progress(
                i * config.questions + q + 1,
                total,
                f"{s.name}: question {q + 1}/{config.questions}, energy "
                f"{report.energy_before:.3f} → {report.energy_after:.3f}",
            )
        row["seconds_per_question"] = {
            "guided": t_guide / max(config.questions, 1),
            "finetune": t_tune / max(config.questions, 1),
        }
        per_image.append(row)
    result: dict[str, Any] = {"questions": marks}
    for variant in ("guided", "finetune"):
        sc = [scores(cms[variant][c]) for c in marks]
        result[variant] = {
            "miou": [r["miou"] for r in sc],
            "pixel_accuracy": [r["pixel_accuracy"] for r in sc],
        }
    result["per_image"] = per_image
    return result


def split_samples(samples: Sequence[Sample], config: QuestionsConfig) -> tuple[list, list]:
    """(training, held-out) images, a seeded random split."""
    if len(samples) < 2:
        raise TrainingDataError("guide-eval needs at least 2 images (training and held-out)")
    order = np.random.default_rng(config.seed).permutation(len(samples))
    n_train = min(len(samples) - 1, max(1, round(len(samples) * config.train_fraction)))
    train = [samples[i] for i in order[:n_train]]
    held = [samples[i] for i in order[n_train:]]
    if config.max_eval:
        held = held[: config.max_eval]
    return train, held


def train_on(
    train: Sequence[Sample], config: QuestionsConfig, class_values: Sequence[int],
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, Any]:  # fmt: skip
    """A classifier trained on the full masks of ``train``; a generator returning it."""
    norm = normalization_from_bands([s.bands for s in train])
    clf = make_classifier(config.model, norm, class_values, [f"class {v}" for v in class_values])
    images = []
    for s in train:
        labels = s.truth.astype(np.uint16)
        prov = np.where(labels > 0, PROVENANCE_HUMAN, 0).astype(np.uint16)
        images.append(make_labeled_image(s.name, norm.apply(s.bands), labels, prov, class_values,
                                         1.0, np.isfinite(s.bands).all(0)))  # fmt: skip
    cfg = TrainConfig(**{**asdict(config.train), "model": config.model, "seed": config.seed})
    yield from clf.fit(images, cfg, cancel)
    return clf


def guide_eval(
    samples: Sequence[Sample],
    config: QuestionsConfig,
    clf: Any = None,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, dict[str, Any]]:
    """The whole evaluation: split, train (unless ``clf`` is given), ask; returns the report."""
    t_start = time.perf_counter()
    train_seconds: float | None = None
    values = sorted({int(v) for s in samples for v in np.unique(s.truth) if v > 0})
    if clf is not None:
        extra = sorted(set(values) - set(clf.class_values))
        if extra:
            raise TrainingDataError(
                f"the masks hold classes {extra} that the model does not know "
                f"(its classes: {clf.class_values})"
            )
        values = list(clf.class_values)
        train, held = split_samples(samples, config)
        if config.train_fraction == 0:
            train, held = [], list(samples)[: config.max_eval or None]
    else:
        if len(values) < 2:
            raise TrainingDataError(f"the masks hold only class {values}: nothing to guide")
        train, held = split_samples(samples, config)
        t0 = time.perf_counter()
        clf = yield from relay(train_on(train, config, values, cancel), 0, 2, "training")
        train_seconds = time.perf_counter() - t0
    if not held:
        raise TrainingDataError("no held-out image to ask questions on")
    xs = [clf.normalization.apply(s.bands) for s in held]
    clf_config = clf._config()
    result = yield from relay(run_questions(clf, held, xs, config, cancel), 1, 2, "questions")
    return {
        "config": config.to_json(),
        "model": {"kind": clf_config["kind"], "class_values": clf.class_values},
        "train_images": [s.name for s in train],
        "eval_images": [s.name for s in held],
        "train_seconds": train_seconds,
        "seconds": time.perf_counter() - t_start,
        **result,
    }


def write_questions_report(report: dict[str, Any], out: str | Path) -> Path:
    """Write ``OUT/report.json`` and ``OUT/report.md`` (the Table-1 layout); returns the JSON."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.json"
    path.write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(format_table(report) + "\n")
    return path


def format_table(report: dict[str, Any]) -> str:
    """The paper's Table 1: mIoU and pixel accuracy (%) after each number of questions."""
    qs = report["questions"]
    lines = [
        "| #questions | " + " | ".join(str(q) for q in qs) + " |",
        "|---|" + "---|" * len(qs),
    ]
    for variant, label in (("guided", "guided (α, β, γ)"), ("finetune", "fine-tuned tail weights")):
        for key, name in (("miou", "mIoU"), ("pixel_accuracy", "p. accuracy")):
            vals = " | ".join(f"{100 * v:.1f}" for v in report[variant][key])
            lines.append(f"| {label} {name} | {vals} |")
    return "\n".join(lines)
