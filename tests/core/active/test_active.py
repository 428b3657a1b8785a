"""Active-learning scores pinned on hand-made probability maps."""

from __future__ import annotations

import numpy as np
import pytest

from napari_hitl.core.active.strategies import (
    ActiveLearningError,
    Schedule,
    ask_pixels,
    confidence_signature,
    coverage_grid,
    find_suspects,
    gmm_log_likelihood,
    item_stats,
    kcenter_greedy,
    local_consistency,
    priorities,
    rank_order,
    split_routes,
    tile_boxes,
)
from napari_hitl.core.io.export import write_csv
from napari_hitl.core.learning.prediction import prediction_from_logits


def test_local_consistency_of_a_known_map():
    conf = np.array([[0.95, 0.60], [0.70, 0.99]])
    pred = np.array([[2, 2], [1, 2]])
    # class 1 is background: the only uncertain object pixel is the 0.60 one
    assert local_consistency(conf, pred, beta=0.9, background=[1]) == pytest.approx(0.60)
    # no background: every class is an object, so 0.60 and 0.70 are averaged
    assert local_consistency(conf, pred, beta=0.9) == pytest.approx(0.65)
    # β below both: nothing is uncertain, τ_l = 1 (an easy image)
    assert local_consistency(conf, pred, beta=0.5) == 1.0
    # masked (labeled) pixels do not count
    mask = np.array([[True, False], [True, True]])
    assert local_consistency(conf, pred, beta=0.9, mask=mask) == pytest.approx(0.70)
    # 0 = no prediction is never an object
    assert local_consistency(conf, np.zeros_like(pred), beta=0.9) == 1.0
    with pytest.raises(ActiveLearningError, match="differ"):
        local_consistency(conf, pred[:1], beta=0.9)


def test_schedule_follows_hise_equations_and_clips():
    s = Schedule(beta0=0.9, dbeta=0.05, gamma0=0.2, dgamma=0.15, beta_min=0.7, gamma_max=0.8)
    assert [s.beta(t) for t in range(5)] == pytest.approx([0.9, 0.85, 0.8, 0.75, 0.7])
    assert s.beta(10) == pytest.approx(0.7)  # clipped at beta_min
    assert [s.gamma(t) for t in range(4)] == pytest.approx([0.2, 0.35, 0.5, 0.65])
    assert s.gamma(10) == pytest.approx(0.8)  # clipped at gamma_max
    assert split_routes(10, 0.35) == (6, 4)  # round(3.5) = 4 easiest items to the machine
    assert split_routes(3, 0.0) == (3, 0)
    with pytest.raises(ActiveLearningError, match="beta0"):
        Schedule(beta0=1.5)
    with pytest.raises(ActiveLearningError, match="beta_min"):
        Schedule(beta0=0.6, beta_min=0.7)


def _probs(p1: np.ndarray) -> np.ndarray:
    """Two-class probabilities from p(class 1)."""
    return np.stack([p1, 1 - p1]).astype(np.float32)


def _stats_of(p1: np.ndarray, beta: float = 0.9, **kw):
    pred = prediction_from_logits(np.log(_probs(p1)), [1, 2])
    return item_stats(pred.confidence, pred.labels, pred.margin, pred.entropy, beta, **kw)


def test_item_stats_and_strategy_orders():
    sure = np.full((8, 8), 0.99)
    half = np.full((8, 8), 0.99)
    half[:4] = 0.55  # half the item nearly a coin toss
    some = np.full((8, 8), 0.99)
    some[:2] = 0.8
    stats = [_stats_of(sure), _stats_of(half), _stats_of(some)]
    assert stats[0].tau_l == 1.0 and stats[0].uncertain_fraction == 0.0
    assert stats[1].tau_l == pytest.approx(0.55, abs=1e-5)
    assert stats[1].uncertain_fraction == pytest.approx(0.5)
    assert stats[2].tau_l == pytest.approx(0.8, abs=1e-5)
    # every uncertainty strategy puts the half-uncertain item first and the sure one last
    for strategy in ("hise", "entropy", "margin"):
        assert list(rank_order(priorities(strategy, stats))) == [1, 2, 0], strategy
    # entropy of a 0.55/0.45 pixel, in nats, averaged with half certain pixels
    h = lambda p: -(p * np.log(p) + (1 - p) * np.log(1 - p))  # noqa: E731
    assert stats[1].mean_entropy == pytest.approx((h(0.55) + h(0.99)) / 2, rel=1e-4)
    assert stats[1].mean_margin_gap == pytest.approx(1 - (0.1 + 0.98) / 2, rel=1e-4)
    # labeled pixels leave the means; labeled/human fractions are reported
    labeled = np.zeros((8, 8), bool)
    labeled[:4] = True
    s = _stats_of(half, labeled=labeled, human=labeled)
    assert s.tau_l == 1.0 and s.pixels == 32 and s.labeled_fraction == 0.5
    assert s.human_fraction == 0.5
    r1, r2 = priorities("random", stats, seed=1), priorities("random", stats, seed=1)
    assert np.array_equal(r1, r2)
    with pytest.raises(ActiveLearningError, match="unknown strategy"):
        priorities("best", stats)


def test_gmm_scores_the_odd_map_lowest():
    rng = np.random.default_rng(0)
    # two kinds of items (the GMM's two components): sure everywhere, or doubtful at the top
    sure = [np.clip(0.95 + 0.02 * rng.standard_normal((32, 32)), 0, 1) for _ in range(10)]
    top = [np.clip(0.95 + 0.02 * rng.standard_normal((32, 32)), 0, 1) for _ in range(10)]
    for m in top:
        m[:16] -= 0.3
    odd = np.clip(0.95 + 0.02 * rng.standard_normal((32, 32)), 0, 1)
    odd[:, :16] -= 0.3  # doubtful on the left: like neither kind
    maps = [*sure, *top, odd]
    sig = confidence_signature(top[0])
    assert sig.shape == (64,) and sig[0] == pytest.approx(0.65, abs=0.02)
    assert sig[-1] == pytest.approx(0.95, abs=0.02)
    ll = gmm_log_likelihood(np.stack([confidence_signature(m) for m in maps]))
    assert int(np.argmin(ll)) == 20
    stats = [_stats_of(np.full((4, 4), 0.9))] * len(maps)
    prio = priorities("gmm", stats, confidences=maps)
    assert rank_order(prio)[-1] == 20  # the most typical first, the odd one last
    # tiny and non-square maps still give the fixed-length vector
    assert confidence_signature(np.ones((3, 5))).shape == (64,)


def test_kcenter_picks_far_from_what_is_labeled():
    f = np.array([[0.0, 0.0], [0.05, 0.0], [5.0, 5.0], [5.1, 5.0], [10.0, 0.0]])
    order, dists = kcenter_greedy(f, covered=np.array([True, False, False, False, False]))
    assert order[0] == 4  # farthest from item 0
    assert order[1] in (2, 3) and order[2] in (2, 3)
    assert order[-1] == 1  # item 1 sits next to labeled item 0: last
    assert dists[0] >= dists[1] >= dists[-1]
    prio = priorities("kcenter", [None] * 5, features=f, covered=np.array([1, 0, 0, 0, 0], bool))
    assert rank_order(prio)[0] == 4 and rank_order(prio)[-1] == 0


def test_questions_smallest_margin_spread_out_and_unlabeled():
    margin = np.ones((40, 40))
    margin[10, 10], margin[10, 12], margin[30, 30], margin[5, 35] = 0.01, 0.02, 0.05, 0.0
    allowed = np.ones((40, 40), bool)
    allowed[5, 35] = False  # already labeled: never asked
    probs = np.zeros((3, 40, 40))
    probs[:, 10, 10] = [0.2, 0.41, 0.39]
    qs = ask_pixels(margin, allowed, n=3, min_distance=5, probabilities=probs,
                    class_values=[1, 2, 5])  # fmt: skip
    assert [(q.row, q.col) for q in qs[:2]] == [(10, 10), (30, 30)]  # (10, 12) is too close
    assert qs[0].first == 2 and qs[0].second == 5 and qs[0].margin == pytest.approx(0.01)
    assert len(qs) == 3 and margin[qs[2].row, qs[2].col] == 1.0
    # no spreading: the two smallest allowed margins, side by side
    qs = ask_pixels(margin, allowed, n=2, min_distance=0)
    assert [(q.row, q.col) for q in qs] == [(10, 10), (10, 12)]
    assert ask_pixels(margin, np.zeros((40, 40), bool), n=3) == []


def test_suspects_are_contradicted_human_labels():
    labels = np.zeros((20, 20), np.uint16)
    labels[2:6, 2:6] = 1  # a human patch the model calls class 2 with confidence
    labels[10:12, 10:12] = 2  # agrees with the model
    labels[15:17, 15:17] = 1  # contradicted, but with little confidence
    human = labels > 0
    human[10:12, 10:12] = True
    pred = np.full((20, 20), 2, np.uint16)
    conf = np.full((20, 20), 0.97)
    conf[15:17, 15:17] = 0.6
    machine = np.zeros_like(human)
    machine[0, 19] = True  # a machine label is never a suspect
    labels[0, 19] = 1
    found = find_suspects(labels, human, pred, conf, threshold=0.9)
    assert len(found) == 1
    s = found[0]
    assert (s.label, s.predicted, s.pixels) == (1, 2, 16)
    assert s.box == (2, 6, 2, 6) and s.centre == (3.5, 3.5)
    assert s.confidence == pytest.approx(0.97)
    assert find_suspects(labels, human, pred, conf, threshold=0.5)[1].pixels == 4
    assert find_suspects(labels, human, pred, conf, min_pixels=20) == []


def test_tiles_coverage_and_csv(tmp_path):
    assert tile_boxes((5, 7), None) == [(0, 5, 0, 7)]
    assert tile_boxes((5, 7), 4) == [(0, 4, 0, 4), (0, 4, 4, 7), (4, 5, 0, 4), (4, 5, 4, 7)]
    lab = np.zeros((5, 7), bool)
    lab[:4, :4] = True
    valid = np.ones((5, 7), bool)
    valid[4, 4:] = False
    grid = coverage_grid(lab, 4, valid)
    assert grid.shape == (2, 2)
    assert grid.tolist() == [[1.0, 0.0], [0.0, 0.0]]
    path = write_csv([{"a": 1, "b": 2}, {"a": 3, "c": 4}], tmp_path / "r.csv")
    assert path.read_text().splitlines() == ["a,b,c", "1,2,", "3,,4"]
