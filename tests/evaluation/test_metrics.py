import numpy as np
import pandas as pd
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


ALL_VALUE_METRICS = [m.normalized_gini, m.spearman, m.decile_mape, m.aggregate_ratio, m.mae,
                     lambda a, p: m.top_share(a, p, 0.5)]


@pytest.mark.parametrize("metric", [f for f in ALL_VALUE_METRICS if f is not m.aggregate_ratio])
def test_two_series_are_paired_by_account_not_by_position(metric):
    actual = pd.Series([0.0, 10.0, 100.0, 5.0], index=["x", "y", "z", "w"])
    shuffled = pd.Series([1.0, 2.0, 3.0, 4.0], index=["z", "y", "x", "w"])
    by_label = metric(actual, shuffled)
    assert by_label == metric(actual.to_numpy(), shuffled.reindex(actual.index).to_numpy())
    assert by_label != metric(actual.to_numpy(), shuffled.to_numpy())


def test_the_reversed_ranking_of_a_shuffled_series_is_seen():
    actual = pd.Series([0.0, 10.0, 100.0], index=["x", "y", "z"])
    assert m.normalized_gini(actual, pd.Series([1.0, 2.0, 3.0], index=["z", "y", "x"])) == \
        pytest.approx(-1.0)
    assert m.auc(actual > 5, pd.Series([0.9, 0.2, 0.1], index=["x", "y", "z"])) == 0.0


def test_series_of_other_accounts_are_refused():
    actual = pd.Series([0.0, 10.0, 100.0], index=["x", "y", "z"])
    with pytest.raises(ValueError, match=r"different index labels \(1 of predicted's, such as 'w'"):
        m.mae(actual, pd.Series([1.0, 2.0, 3.0], index=["x", "y", "w"]))
    with pytest.raises(ValueError, match="repeat labels"):
        m.mae(actual.set_axis(["x", "x", "y"]), pd.Series([1.0, 2.0, 3.0], index=["y", "x", "x"]))
    with pytest.raises(ValueError, match="different index labels"):
        m.auc(actual > 5, pd.Series([0.9, 0.2, 0.1]))


@pytest.mark.parametrize("call", [
    lambda: m.normalized_gini([1, 2, 3], [1, 2]),
    lambda: m.decile_mape([1, 2, 3], [1, 2]),
    lambda: m.top_share([1, 2, 3], [1, 2], 0.5),
    lambda: m.auc([0, 1, 1], [0.1, 0.2]),
    lambda: m.best_recall_at_precision([1, 0, 1], [0.9, 0.8], 0.6),
    lambda: m.interval_coverage([1, 2, 3], [0], [5, 5]),
], ids=["gini", "decile_mape", "top_share", "auc", "best_recall", "coverage"])
def test_length_mismatch_is_an_error_in_every_metric(call):
    with pytest.raises(ValueError, match="must be 1-d of equal length"):
        call()


@pytest.mark.parametrize("metric", ALL_VALUE_METRICS)
def test_a_missing_value_is_an_error_naming_its_side_and_count(metric):
    with pytest.raises(ValueError, match="predicted has 1 missing or infinite value"):
        metric([1.0, 2.0, 3.0, 4.0], [1.0, np.nan, 3.0, 4.0])
    with pytest.raises(ValueError, match="actual has 2 missing or infinite value"):
        metric([1.0, np.nan, np.inf, 4.0], [1.0, 2.0, 3.0, 4.0])


def test_auc_needs_binary_events_and_accounts():
    with pytest.raises(ValueError, match="events must be 0/1 or bool, got 0.5 in 1 row"):
        m.auc([0, 0.5, 1, 1], [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(ValueError, match="events has 1 missing value"):
        m.auc([0, 1, np.nan, 1], [0.1, 0.4, 0.35, 0.8])
    with pytest.raises(ValueError, match="events must be 0/1 or bool, got string values such as 'no'"):
        m.auc(["no", "yes"], [0.1, 0.4])
    with pytest.raises(ValueError, match="scores has 1 missing"):
        m.auc([0, 1, 0, 1], [0.1, np.nan, 0.35, 0.8])
    with pytest.raises(ValueError, match="AUC needs at least one account"):
        m.auc([], [])
    assert m.auc([False, False, True, True], [0.1, 0.4, 0.35, 0.8]) == 0.75
    # Without events the best recall is undefined, not an error: a book may have no
    # valuable account to flag.
    assert np.isnan(m.best_recall_at_precision([], [], 0.6))


def test_decile_mape_skips_bins_without_positive_value_and_splits_ties_by_row_order():
    with pytest.raises(ValueError, match="empty"):
        m.decile_mape([], [])
    # The lower bin nets to -5 (returns): skipped; the upper one is off by 6.5 / 10.
    assert m.decile_mape([-5.0, -5.0, 10.0, 10.0], [1.0, 2.0, 3.0, 4.0], n_bins=2) == \
        pytest.approx(0.65)
    assert np.isnan(m.decile_mape([0.0, 0.0], [1.0, 2.0]))
    # Three tied predictions: the first two rows fill the lower bin.
    p = [5.0, 5.0, 5.0, 9.0]
    assert m.decile_mape([1.0, 3.0, 2.0, 6.0], p, n_bins=2) == pytest.approx((3 / 2 + 3 / 4) / 2)
    assert m.decile_mape([2.0, 3.0, 1.0, 6.0], p, n_bins=2) == pytest.approx((2.5 / 2.5 + 3.5 / 3.5) / 2)


def test_metric_arguments_out_of_range_are_refused():
    # They returned 0.0 (or pandas' own message) instead of saying so (audit 28).
    import numpy as np
    import pytest

    from keyltv.evaluation.metrics import best_recall_at_precision, decile_mape, interval_coverage

    a, p = np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.5, 2.0])
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="n_bins must be a whole number of at least 1"):
            decile_mape(a, p, n_bins=bad)
    for bad in (0.0, 2.0, float("nan")):
        with pytest.raises(ValueError, match=r"precision must be in \(0, 1\]"):
            best_recall_at_precision([1, 0, 1], p, bad)
    with pytest.raises(ValueError, match="low is above high for 1 account"):
        interval_coverage(a, [0.0, 3.0, 1.0], [2.0, 2.0, 4.0])
