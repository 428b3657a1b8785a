"""How long a network trains and its learning rate at each step: a step count, or seconds.

:class:`TrainingClock` drives a training loop either for a fixed number of optimizer steps (the
default: PyTorch's ``OneCycleLR`` over those steps, reproducible to the bit under a seed) or for
a budget in seconds (``TrainConfig.time_budget``). Under a budget the same one-cycle shape is
laid over *time*: the learning rate (and Adam's β₁ or SGD's momentum, cycled inversely as
``OneCycleLR`` does) at each step follows the share of the budget spent, and training stops
once the budget is spent — after at least :data:`MIN_BUDGET_STEPS` steps, so a tiny budget on a
slow machine still trains something. A budget makes the number of steps, and so the weights,
depend on the machine's speed and load; a step count does not.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from napari_hitl.core.progress import Progress

PCT_START = 0.15  # share of training spent warming the learning rate up
DIV_FACTOR = 25.0  # initial learning rate = peak / DIV_FACTOR (OneCycleLR's default)
FINAL_DIV_FACTOR = 1e4  # final learning rate = initial / FINAL_DIV_FACTOR (OneCycleLR's)
MOMENTUM_RANGE = (0.85, 0.95)  # β₁ / momentum at the peak and at both ends (OneCycleLR's)
MIN_BUDGET_STEPS = 10  # a budget never trains fewer steps than this
PROGRESS_TICKS = 1000  # a budget's progress is reported in thousandths of it


def one_cycle(fraction: float, peak: float) -> tuple[float, float]:
    """The learning rate and momentum of the one-cycle policy at ``fraction`` of training.

    Cosine warm-up from ``peak / DIV_FACTOR`` to ``peak`` over the first :data:`PCT_START` of
    training, then cosine annealing to ``peak / DIV_FACTOR / FINAL_DIV_FACTOR``; the momentum
    moves the other way between the two ends of :data:`MOMENTUM_RANGE` (the shape of
    ``torch.optim.lr_scheduler.OneCycleLR`` with its defaults).

    Parameters
    ----------
    fraction
        Share of training done, clipped to [0, 1].
    peak
        The highest learning rate.

    Returns
    -------
    tuple of float
        ``(learning rate, momentum)``.
    """
    p = min(max(fraction, 0.0), 1.0)
    initial = peak / DIV_FACTOR
    low, high = MOMENTUM_RANGE
    if p < PCT_START:
        a = p / PCT_START
        return _cosine(initial, peak, a), _cosine(high, low, a)
    a = (p - PCT_START) / (1.0 - PCT_START)
    return _cosine(peak, initial / FINAL_DIV_FACTOR, a), _cosine(low, high, a)


def _cosine(start: float, end: float, a: float) -> float:
    return end + (start - end) / 2.0 * (1.0 + math.cos(math.pi * a))


class TrainingClock:
    """When a training loop stops, and the learning rate of its next step.

    Parameters
    ----------
    optimizer
        The optimizer whose learning rate (and momentum) the clock sets; its current learning
        rate is taken as the peak.
    steps
        Optimizer steps to run when there is no budget.
    seconds
        A training budget in seconds (``None``: run ``steps`` steps).
    timer
        The clock in seconds (``time.perf_counter``; tests pass a fake one).

    Examples
    --------
    >>> clock = TrainingClock(opt, steps=160, seconds=None)   # doctest: +SKIP
    >>> while clock.running():                                # doctest: +SKIP
    ...     loss = train_one_step(); clock.tick()
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        steps: int,
        seconds: float | None,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.optimizer = optimizer
        self.steps = max(int(steps), 1)
        self.seconds = seconds
        self.done = 0
        self._timer = timer
        self._start = timer()
        self._scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        if seconds is None:
            self._scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer,
                max_lr=optimizer.param_groups[0]["lr"],
                total_steps=self.steps,
                pct_start=PCT_START,
            )
        else:
            self._peaks = [group["lr"] for group in optimizer.param_groups]
            self._set(0.0)

    @property
    def elapsed(self) -> float:
        """Seconds since the clock started."""
        return self._timer() - self._start

    def fraction(self) -> float:
        """Share of the training done: of the steps, or of the budget's seconds."""
        if self.seconds is None:
            return self.done / self.steps
        return min(1.0, self.elapsed / self.seconds)

    def running(self) -> bool:
        """Whether to take another step."""
        if self.seconds is None:
            return self.done < self.steps
        return self.done < MIN_BUDGET_STEPS or self.elapsed < self.seconds

    def tick(self) -> None:
        """Count a step just taken and set the learning rate of the next."""
        self.done += 1
        if self._scheduler is not None:
            self._scheduler.step()
        else:
            self._set(self.fraction())

    def progress(self, label: str, what: str) -> Progress:
        """A progress report after the last step: ``"{label}: step 12/160, {what}"``, or with
        a budget ``"{label}: step 12, 0.4/5 s, {what}"`` in thousandths of the budget."""
        if self.seconds is None:
            message = f"{label}: step {self.done}/{self.steps}, {what}"
            return Progress(self.done, self.steps, message)
        ticks = min(PROGRESS_TICKS, int(PROGRESS_TICKS * self.fraction()))
        message = f"{label}: step {self.done}, {self.elapsed:.1f}/{self.seconds:g} s, {what}"
        return Progress(ticks, PROGRESS_TICKS, message)

    def _set(self, fraction: float) -> None:
        for group, peak in zip(self.optimizer.param_groups, self._peaks, strict=True):
            lr, momentum = one_cycle(fraction, peak)
            group["lr"] = lr
            if "betas" in group:
                group["betas"] = (momentum, *group["betas"][1:])
            elif "momentum" in group:
                group["momentum"] = momentum
