"""Banded conformal intervals: coverage by construction, also with ties at zero."""

import numpy as np
import pytest

from keyltv.models.interval import BandedIntervals, _central_range


def _holdout(rng: np.random.Generator, n: int, zero_share: float) -> tuple[np.ndarray, np.ndarray]:
    """Predictions over a 1000x range; actual = prediction x lognormal, some zeros."""
    predicted = np.exp(rng.uniform(0, np.log(1000), n))
    actual = predicted * rng.lognormal(0.0, 0.7, n)
    actual[rng.random(n) < zero_share] = 0.0
    return predicted, actual


def _coverage(model: BandedIntervals, predicted: np.ndarray, actual: np.ndarray) -> float:
    low, high = model.predict(predicted)
    return float(np.mean((actual >= low) & (actual <= high)))


def test_central_range_counts_ties_at_zero_towards_the_level():
    values = np.array([0, 0, 0, 0, 1, 2, 3, 4, 5, 6], dtype=float)
    # 10th percentile is 0; nothing lies below it, so 80% ends at the 8th value.
    assert _central_range(values, 0.8) == (0.0, 4.0)
    # Without ties: from the 10th percentile, exactly 8 of the 10 values.
    assert _central_range(np.arange(1.0, 11.0), 0.8) == (1.0, 8.0)


@pytest.mark.parametrize("zero_share", [0.0, 0.3, 0.6])
def test_coverage_on_fresh_accounts_is_the_target(zero_share):
    rng = np.random.default_rng(0)
    model = BandedIntervals().fit(*_holdout(rng, 20_000, zero_share))
    assert 0.79 <= model.holdout_coverage_ <= 0.81  # cross-fitted: near, not above, 0.8
    # Uncorrected bands ([q10, q90] with 30% zeros) covered 0.9.
    assert 0.78 <= _coverage(model, *_holdout(rng, 20_000, zero_share)) <= 0.82


def test_interval_contains_the_prediction_and_handles_zero_predictions():
    rng = np.random.default_rng(1)
    predicted, actual = _holdout(rng, 5_000, 0.2)
    predicted[:500] = 0.0
    actual[:500] = np.where(rng.random(500) < 0.7, 0.0, rng.uniform(0, 50, 500))
    model = BandedIntervals().fit(predicted, actual)
    low, high = model.predict(predicted)
    assert (low <= predicted).all() and (predicted <= high).all() and (low >= 0).all()
    assert model.zero_bounds_[0] == 0.0 and 0 < model.zero_bounds_[1] <= 50


def test_rejects_a_coverage_outside_zero_one():
    with pytest.raises(ValueError, match="coverage"):
        BandedIntervals(coverage=1.2).fit([1.0], [1.0])


def test_holdout_coverage_is_cross_fitted_not_judged_on_its_own_rows():
    rng = np.random.default_rng(4)
    predicted = rng.gamma(1.0, 100.0, 2000)
    actual = predicted * rng.lognormal(0.0, 0.8, 2000)
    fitted = BandedIntervals(n_bands=10).fit(predicted, actual)
    assert 0.75 <= fitted.holdout_coverage_ <= 0.85
    # Narrow bands fit their own rows: at least 80% in-sample, less on the other half.
    narrow = BandedIntervals(n_bands=200).fit(predicted, actual)
    low, high = narrow.predict(predicted)
    in_sample = np.mean((actual >= low) & (actual <= high))
    assert in_sample >= 0.8 > narrow.holdout_coverage_


def test_lengths_and_non_finite_values_are_refused():
    with pytest.raises(ValueError, match=r"actual must be one value per prediction \(3\), got 2"):
        BandedIntervals().fit([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="actual has 1 missing or infinite"):
        BandedIntervals().fit([1.0, 2.0], [1.0, np.nan])
    model = BandedIntervals().fit(np.arange(1.0, 11.0), np.arange(1.0, 11.0))
    # An infinite prediction had an infinite interval, a missing one a NaN interval.
    with pytest.raises(ValueError, match="predicted has 2 missing or infinite"):
        model.predict([1.0, np.inf, np.nan])
    low, high = model.predict([])
    assert low.shape == high.shape == (0,)


@pytest.mark.parametrize("n", [12, 45])
def test_a_small_book_gets_fewer_wider_bands_not_point_intervals(n):
    # Ten bands of a 12- or 45-account holdout each held under five rows, and every
    # interval was its prediction alone (audit 28).
    rng = np.random.default_rng(5)
    model = BandedIntervals().fit(*_holdout(rng, n, 0.0))
    assert len(model.edges_) + 1 == max(n // 20, 1)
    predicted, actual = _holdout(rng, 2_000, 0.0)
    low, high = model.predict(predicted)
    assert (low < predicted).all() and (high > predicted).all()
    # Near the target, as near as a range of 12 or 45 ratios allows (from the 2nd to the
    # 11th of 12 ratios: about 0.7 expected); a point interval covered nothing.
    assert 0.5 <= _coverage(model, predicted, actual) <= 0.95


def test_an_empty_holdout_is_refused():
    with pytest.raises(ValueError, match="no holdout rows"):
        BandedIntervals().fit([], [])
