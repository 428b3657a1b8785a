"""The training clock: a step count reproduces PyTorch's one-cycle schedule; a budget in seconds
lays the same cycle over time, stops when the budget is spent and still trains a model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.helpers import scribbled_scenes

from napari_hitl.core.learning.net import NetClassifier, TrainConfig
from napari_hitl.core.learning.prediction import predict_normalized
from napari_hitl.core.learning.schedule import (
    DIV_FACTOR,
    FINAL_DIV_FACTOR,
    MIN_BUDGET_STEPS,
    PCT_START,
    TrainingClock,
    one_cycle,
)
from napari_hitl.core.progress import run_to_end

CLASSES = [1, 2, 3, 4, 5]


def _optimizer(lr: float = 1e-2, kind: str = "adamw") -> torch.optim.Optimizer:
    params = [torch.nn.Parameter(torch.zeros(3))]
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    return torch.optim.AdamW(params, lr=lr)


class FakeTimer:
    """A clock that advances ``dt`` seconds each time it is read."""

    def __init__(self, dt: float) -> None:
        self.t, self.dt = 100.0, dt

    def __call__(self) -> float:
        self.t += self.dt
        return self.t


def test_one_cycle_has_torchs_shape():
    peak = 3e-3
    assert one_cycle(0.0, peak) == pytest.approx((peak / DIV_FACTOR, 0.95))
    assert one_cycle(PCT_START, peak) == pytest.approx((peak, 0.85))
    assert one_cycle(1.0, peak) == pytest.approx((peak / DIV_FACTOR / FINAL_DIV_FACTOR, 0.95))
    assert one_cycle(7.0, peak) == one_cycle(1.0, peak)  # clipped: an overrun stays at the end
    # against torch's OneCycleLR over 1000 steps, at the same share of training
    opt = _optimizer(peak)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=peak, total_steps=1000, pct_start=0.15)
    for step in range(1000):
        if step % 50 == 0:
            lr, beta1 = one_cycle(step / 999, peak)
            assert lr == pytest.approx(opt.param_groups[0]["lr"], rel=0.02, abs=peak * 1e-3)
            assert beta1 == pytest.approx(opt.param_groups[0]["betas"][0], abs=2e-3)
        opt.step()
        sched.step()


def test_step_count_is_torchs_one_cycle():
    mine, theirs = _optimizer(), _optimizer()
    clock = TrainingClock(mine, steps=40, seconds=None)
    sched = torch.optim.lr_scheduler.OneCycleLR(theirs, max_lr=1e-2, total_steps=40, pct_start=0.15)
    n = 0
    while clock.running():
        assert mine.param_groups[0]["lr"] == theirs.param_groups[0]["lr"]
        mine.step(), theirs.step()
        clock.tick(), sched.step()
        n += 1
    assert n == clock.done == 40
    assert clock.progress("training unet", "loss 0.5").message == (
        "training unet: step 40/40, loss 0.5"
    )


@pytest.mark.parametrize("kind", ["adamw", "sgd"])
def test_a_budget_stops_when_spent_and_cycles_over_time(kind):
    opt = _optimizer(kind=kind)
    clock = TrainingClock(opt, steps=5, seconds=2.0, timer=FakeTimer(0.01))  # 0.01 s a read
    lrs = [opt.param_groups[0]["lr"]]
    while clock.running():
        clock.tick()
        lrs.append(opt.param_groups[0]["lr"])
    # each loop reads the timer about twice: ~100 steps, not the 5 of the step count
    assert 80 <= clock.done <= 110
    assert clock.elapsed >= 2.0
    top = int(np.argmax(lrs))
    assert lrs[0] == pytest.approx(1e-2 / DIV_FACTOR)
    assert 0.10 < top / len(lrs) < 0.20 and lrs[top] > 0.95e-2  # the peak at ~15 % of the time
    assert lrs[-1] < 1e-2 / DIV_FACTOR / 100  # annealed by the end
    assert all(np.diff(lrs[top:]) <= 1e-12)
    momentum = (
        opt.param_groups[0]["betas"][0] if kind == "adamw" else opt.param_groups[0]["momentum"]
    )
    assert momentum == pytest.approx(0.95, abs=1e-3)
    report = clock.progress("training unet", "loss 0.1")
    assert report.total == 1000 and report.done == 1000 and "/2 s" in report.message


def test_a_tiny_budget_still_takes_the_minimum_steps():
    clock = TrainingClock(_optimizer(), steps=160, seconds=0.001, timer=FakeTimer(1.0))
    while clock.running():
        clock.tick()
    assert clock.done == MIN_BUDGET_STEPS


@pytest.fixture(scope="module")
def scenes():
    return scribbled_scenes()


def test_a_network_trained_for_a_budget_learns_and_reports_its_steps(scenes, monkeypatch):
    """The budget drives the steps and the learning-rate cycle of a real fit. Its clock is a fake
    one (each read 1/160 s later), so the steps do not depend on this machine's load."""
    from napari_hitl.core.learning import net as net_module

    timer = FakeTimer(1 / 160)
    monkeypatch.setattr(
        net_module,
        "TrainingClock",
        lambda opt, steps, seconds: TrainingClock(opt, steps, seconds, timer=timer),
    )
    norm, image, x_test, truth, names = scenes
    clf = NetClassifier("unet", norm, CLASSES, names)
    report = run_to_end(clf.fit([image], TrainConfig(steps=5, time_budget=2.0, seed=0)))
    pred = run_to_end(predict_normalized(clf, x_test))
    acc = float((pred.labels == truth).mean())
    print(f"budget 2 s: {report.steps} steps, held-out accuracy {acc:.3f}")
    assert 60 <= report.steps <= 100  # the budget's, not the 5 of the step count
    assert acc > 0.75  # the step-count test's floor (test_training.py, 80 steps)
