"""An ensemble of a network and the forest: their calibrated probabilities, averaged.

The U-Net and the ilastik-style forest fail in different places — the network is unsteady from
one iteration to the next and short-sighted on texture, the forest is steady but blind to
shape — so the average of their calibrated probabilities (each member fitted its temperature on
the same held-out strokes) is right where either is confidently right and unsure where they
disagree. Model name ``unet+rf`` (any ``A+B`` of :data:`~napari_hitl.core.choices.MODEL_NAMES`).

The checkpoint is an npz of the members' checkpoints (numbers only, no pickle) plus their JSON
configurations; each member is read back by its own safe loader.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Generator, Sequence
from typing import Any

import numpy as np

from napari_hitl.core.errors import StoreError
from napari_hitl.core.learning.config import TrainJob
from napari_hitl.core.learning.data import LabeledImage, Normalization
from napari_hitl.core.learning.net import TrainConfig, TrainReport, prepare_training
from napari_hitl.core.learning.prediction import softmax
from napari_hitl.core.progress import CancelToken, Progress, relay, run_to_end

ENSEMBLE_FORMAT = "napari-hitl-ensemble-npz/1"
# Equal weights by default: weights fitted on the held-out strokes were measured to be noisier
# (sen1floods seed 0: mean test mIoU over the iterations 0.725 fitted vs 0.767 equal) and did
# not rescue eo-learn, whose held-out strokes favour the forest that fails on the test tiles.
DEFAULT_WEIGHTING = "equal"


def member_kinds(kind: str) -> list[str]:
    """The member model names of an ensemble name (``"unet+rf"`` → ``["unet", "rf"]``)."""
    return [k.strip() for k in kind.split("+") if k.strip()]


class EnsembleClassifier:
    """Members trained on the same strokes; their calibrated probabilities are mixed.

    ``"equal"`` (the default, :data:`DEFAULT_WEIGHTING`) averages them. With
    ``weighting="fit"`` the mixture weight of two members is the one that gives the held-out human
    strokes the smallest log loss (a grid of 21 weights; equal below 20 held-out pixels). Both
    members saw the same training strokes and the same held-out ones (their split is drawn from
    ``config.seed``), so the weight is fitted on pixels neither trained on — but on pixels of
    the same images, which flatter the forest (see :data:`DEFAULT_WEIGHTING`).

    Parameters
    ----------
    members
        The member classifiers (built by
        :func:`napari_hitl.core.learning.registry.make_classifier`).
    weighting
        ``"fit"`` or ``"equal"`` (``None``: :data:`DEFAULT_WEIGHTING`).
    """

    def __init__(self, members: Sequence[Any], weighting: str | None = None) -> None:
        weighting = weighting or DEFAULT_WEIGHTING
        if len(members) < 2:
            raise ValueError("an ensemble needs two or more models")
        if weighting not in ("fit", "equal"):
            raise ValueError(f"weighting must be 'fit' or 'equal', not {weighting!r}")
        self.members = list(members)
        self.weighting = weighting
        self.weights = [1.0 / len(self.members)] * len(self.members)
        self.temperature = 1.0
        first = self.members[0]
        self.normalization: Normalization = first.normalization
        self.class_values = list(first.class_values)
        self.class_names = list(first.class_names)
        self.kind = "+".join(m.kind for m in self.members)
        self.halo = max(int(m.halo) for m in self.members)
        self.default_tile = min(int(getattr(m, "default_tile", 512)) for m in self.members)
        self.class_log_prior = np.zeros(len(self.class_values), np.float32)

    @property
    def trained(self) -> bool:
        """Every member is trained."""
        return all(m.trained for m in self.members)

    @property
    def align(self) -> int:
        """Window sizes must suit every member: the largest alignment (all are powers of 2)."""
        return max(int(m.align) for m in self.members)

    @property
    def net(self) -> Any:
        """The first network member's module (its pooling alignment sets the windows')."""
        for m in self.members:
            if getattr(m, "net", None) is not None:
                return m.net
        return None

    def fit(
        self, images: Sequence[LabeledImage], config: TrainConfig, cancel: CancelToken | None = None
    ) -> TrainJob:
        """Train every member on the same strokes and split; a progress generator."""
        n = len(self.members)
        reports = []
        for i, m in enumerate(self.members):
            reports.append((yield from relay(m.fit(images, config, cancel), i, n, m.kind)))
        first = reports[0]
        report = TrainReport(
            steps=sum(r.steps for r in reports),
            seconds=sum(r.seconds for r in reports),
            final_loss=first.final_loss,
            class_pixels=first.class_pixels,
            holdout_pixels=first.holdout_pixels,
            temperature=1.0,
            warm_start=any(r.warm_start for r in reports),
        )
        self.weights = [1.0 / n] * n
        report.holdout_accuracy = None
        if first.holdout_pixels < 20:  # as calibrate: too few held-out pixels to say anything
            return report
        probs, target = self._held_out(images, config)
        if self.weighting == "fit" and n == 2:
            grid = np.linspace(0.0, 1.0, 21)
            p_true = [pm[np.arange(target.size), target] for pm in probs]
            nll = [
                -np.mean(np.log(np.clip(w * p_true[0] + (1 - w) * p_true[1], 1e-6, 1)))
                for w in grid
            ]
            w = float(grid[int(np.argmin(nll))])
            self.weights = [w, 1.0 - w]
        mixed = sum(w * pm for w, pm in zip(self.weights, probs, strict=True))
        report.holdout_accuracy = float(np.mean(mixed.argmax(1) == target))  # what it predicts
        return report

    def _held_out(
        self, images: Sequence[LabeledImage], config: TrainConfig
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """Each member's calibrated probabilities ``N, K`` on the held-out strokes, and targets."""
        rng = np.random.default_rng(config.seed)  # the split every member drew
        split = prepare_training(images, self.class_names, config, rng)
        probs: list[list[np.ndarray]] = [[] for _ in self.members]
        target = []
        for i, flat in split.held:
            for j, m in enumerate(self.members):
                p = softmax(m.logits(images[i].x), m.temperature)
                probs[j].append(p.reshape(p.shape[0], -1)[:, flat].T)
            target.append(images[i].target.ravel()[flat])
        return [np.concatenate(p) for p in probs], np.concatenate(target)

    def _average(self, logits: Sequence[np.ndarray]) -> np.ndarray:
        p = np.zeros_like(logits[0], dtype=np.float32)
        for m, z, w in zip(self.members, logits, self.weights, strict=True):
            if w > 0:
                p += np.float32(w) * softmax(z, m.temperature)
        return np.log(np.clip(p, 1e-6, 1.0))

    def logits_job(
        self, x: np.ndarray, tile: int | None = 512, cancel: CancelToken | None = None
    ) -> Generator[Progress, None, np.ndarray]:
        """Log of the averaged calibrated probabilities ``K, H, W``; a progress generator."""
        n = len(self.members)
        out = []
        for i, m in enumerate(self.members):
            out.append((yield from relay(m.logits_job(x, tile, cancel), i, n, m.kind)))
        return self._average(out)

    def logits(self, x: np.ndarray, tile: int | None = 512) -> np.ndarray:
        """:meth:`logits_job` without progress."""
        return run_to_end(self.logits_job(x, tile))

    def window_logits(self, window: np.ndarray) -> np.ndarray:
        """Averaged log-probabilities of the centre of a window padded by :attr:`halo`."""
        out = []
        for m in self.members:
            d = self.halo - int(m.halo)
            w = window[:, d : window.shape[1] - d, d : window.shape[2] - d] if d else window
            out.append(m.window_logits(w))
        return self._average(out)

    # ------------------------------------------------------------------ saving
    def state(self) -> tuple[bytes, dict[str, Any]]:
        """The members' checkpoints in one npz (numbers only) and the configuration."""
        arrays: dict[str, np.ndarray] = {}
        configs = []
        for i, m in enumerate(self.members):
            blob, config = m.state()
            arrays[f"member{i}"] = np.frombuffer(blob, np.uint8)
            configs.append(config)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        config = {
            "kind": self.kind,
            "format": ENSEMBLE_FORMAT,
            "members": configs,
            "normalization": self.normalization.to_json(),
            "class_values": self.class_values,
            "class_names": self.class_names,
            "trained": self.trained,
            "weighting": self.weighting,
            "weights": self.weights,
        }
        return buf.getvalue(), json.loads(json.dumps(config))

    @classmethod
    def from_state(
        cls,
        blob: bytes,
        config: dict[str, Any],
        load_member: Callable[[bytes, dict[str, Any]], Any],
    ) -> EnsembleClassifier:
        """Inverse of :meth:`state`; ``load_member(blob, config)`` rebuilds each member with
        its own loader (:func:`napari_hitl.core.learning.registry.classifier_from_state`; no
        pickle)."""
        if config.get("format") != ENSEMBLE_FORMAT:
            raise StoreError(f"not a napari-hitl ensemble (format {config.get('format')!r})")
        try:
            with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
                blobs = [npz[f"member{i}"].tobytes() for i in range(len(config["members"]))]
        except Exception as exc:
            raise StoreError(f"the ensemble cannot be read ({type(exc).__name__})") from exc
        members = [load_member(b, c) for b, c in zip(blobs, config["members"], strict=True)]
        clf = cls(members, str(config.get("weighting", "equal")))
        weights = config.get("weights")
        if weights is not None:
            if len(weights) != len(members) or not all(0 <= float(w) <= 1 for w in weights):
                raise StoreError("the ensemble's weights are damaged")
            clf.weights = [float(w) for w in weights]
        return clf
