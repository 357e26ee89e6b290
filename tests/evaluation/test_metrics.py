import numpy as np
import pytest

from keyltv.evaluation import metrics as m

ACTUAL = np.array([0.0, 0.0, 5.0, 10.0, 100.0, 0.0, 1.0, 30.0])


def test_perfect_ranking_has_normalized_gini_one():
    assert m.normalized_gini(ACTUAL, ACTUAL * 3 + 1) == pytest.approx(1.0)


def test_reversed_ranking_is_negative_and_constant_is_zero():
    assert m.normalized_gini(ACTUAL, -ACTUAL) < -0.5
    assert m.normalized_gini(ACTUAL, np.ones_like(ACTUAL)) == pytest.approx(0.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_ranking_is_near_zero(seed):
    rng = np.random.default_rng(seed)
    actual = rng.gamma(0.5, 100, size=20_000)
    assert abs(m.normalized_gini(actual, rng.random(actual.size))) < 0.03


def test_top_share_shares_ties_whatever_the_row_order():
    a = np.array([10.0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    tied = np.zeros(10)
    assert m.top_share(a, tied, 0.1) == m.top_share(a[::-1], tied, 0.1) == pytest.approx(0.1)
    # Two of three tied accounts fit in the top 4: they count with the tie's mean.
    p = np.array([9.0, 5, 5, 5, 1, 1, 1, 1, 1, 1])
    a = np.array([4.0, 6, 0, 0, 0, 0, 0, 0, 0, 0])
    assert m.top_share(a, p, 0.3) == pytest.approx((4 + 2 * 2) / 10)


def test_top_share_and_aggregate():
    assert m.top_share(ACTUAL, ACTUAL, 0.125) == pytest.approx(100 / 146)
    assert m.aggregate_ratio(ACTUAL, ACTUAL * 1.1) == pytest.approx(1.1)
    assert m.mae(ACTUAL, ACTUAL + 2) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="share must be in"):
        m.top_share(ACTUAL, ACTUAL, 0)


def test_decile_mape_is_zero_for_exact_predictions_and_grows_with_bias():
    rng = np.random.default_rng(0)
    actual = rng.gamma(1.0, 50, 1000)
    assert m.decile_mape(actual, actual) == pytest.approx(0.0)
    assert m.decile_mape(actual, actual * 1.5) == pytest.approx(0.5)


def test_spearman_and_auc():
    assert m.spearman(ACTUAL, ACTUAL) == pytest.approx(1.0)
    assert np.isnan(m.spearman(ACTUAL, np.zeros_like(ACTUAL)))
    assert m.auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert np.isnan(m.auc([1, 1], [0.1, 0.2]))


def test_interval_coverage():
    assert m.interval_coverage([1, 5, 10], [0, 0, 0], [2, 6, 9]) == pytest.approx(2 / 3)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="equal length"):
        m.mae([1, 2], [1])


def test_best_recall_at_precision():
    events = [1, 1, 0, 1, 0, 0]
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    # Top 2: precision 1, recall 2/3; top 4: precision 3/4, recall 1.
    assert m.best_recall_at_precision(events, scores, 0.8) == pytest.approx(2 / 3)
    assert m.best_recall_at_precision(events, scores, 0.75) == pytest.approx(1.0)
    assert m.best_recall_at_precision([0, 1], [0.9, 0.1], 0.6) == 0.0
    assert np.isnan(m.best_recall_at_precision([0, 0], [0.9, 0.1], 0.6))
