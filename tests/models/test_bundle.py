from datetime import date

import numpy as np
import pandas as pd
import pytest

from keyltv.config import Config
from keyltv.data.simulate import simulate_b2b
from keyltv.data.transactions import load_transactions
from keyltv.features import future_values
from keyltv.models.bundle import KeyLTVModel, margin_credibility
from keyltv.models.training import event_labels, fit_value_model, full_trailing_windows, training_data


@pytest.fixture(scope="module")
def short_log():
    tx, _ = simulate_b2b(300, variant="short_history", seed=4)
    return load_transactions(tx)


def test_short_history_uses_shorter_labels_scaled_to_the_horizon(short_log):
    config = Config(horizon_days=182, training={"n_cutoffs": 1, "min_feature_days": 90})
    data = training_data(short_log, date(2021, 9, 1), config, None)
    assert data.stacked_X is not None
    assert "scaled to 182" in data.note
    (cutoff,) = data.cutoffs
    label_days = (date(2021, 9, 1) - cutoff).days
    assert label_days < 182
    raw = future_values(short_log, cutoff, label_days, data.stacked_X.index)["value"].to_numpy()
    scaled = data.stacked_y["value"].to_numpy()
    factor = scaled[raw > 0] / raw[raw > 0]
    # Per-account BG/NBD extrapolation: never more than a flat rate would give.
    assert (factor > 1).all() and (factor <= 182 / label_days + 1e-9).all()


def test_too_short_history_leaves_supervised_models_out(short_log):
    config = Config(horizon_days=182)
    data = training_data(short_log, date(2021, 3, 1), config, None)
    assert data.stacked_X is None and "no label window" in data.note


def test_event_labels():
    decline, growth = event_labels([100, 100, 0, -5], [40, 200, 10, 0], Config())
    assert decline.tolist() == [True, False, False, False]
    assert growth.tolist() == [False, True, True, False]
    assert np.asarray(decline).dtype == bool


def test_run_rate_offset_only_where_training_cutoffs_have_a_whole_horizon(short_log):
    # 15 months of log: the latest cutoff of a 182-day horizon at 2021-09-01 has 61 days
    # (with min_feature_days 60) before it; one 181 days later has 242.
    config = Config(horizon_days=182, training={"n_cutoffs": 2, "min_feature_days": 60})
    short = training_data(short_log, date(2021, 9, 1), config, None)
    assert not full_trailing_windows(short, 182)
    assert not fit_value_model("lightgbm", short, config).run_rate_offset
    whole = training_data(short_log, date(2022, 3, 1), config, None)
    assert (max(whole.cutoffs) - whole.first_date).days >= 182
    assert full_trailing_windows(whole, 182)
    assert fit_value_model("hybrid", whole, config).run_rate_offset


def moments(rows):
    """margin_day_moments' frame from (account, [(value, rate), ...]) rows."""
    return pd.DataFrame(
        {"days": [float(len(days)) for _, days in rows],
         "weight": [sum(v for v, _ in days) for _, days in rows],
         "margin": [sum(v * r for v, r in days) for _, days in rows],
         "margin_sq": [sum(v * r * r for v, r in days) for _, days in rows]},
        index=[name for name, _ in rows])


def test_margin_credibility_by_hand():
    # Rates 10%/30% and 50%/70% on days of 100: within-account variance per unit of
    # value (100 * 0.1^2 * 4) / 2 = 2; between accounts (2 * 200 * 0.2^2 - 1 * 2) /
    # (400 - (200^2 + 200^2) / 400) = 14 / 200 = 0.07; k = 2 / 0.07.
    k = margin_credibility(moments([("a", [(100, 0.1), (100, 0.3)]),
                                    ("b", [(100, 0.5), (100, 0.7)])]))
    assert k == pytest.approx(2 / 0.07)


def test_margin_credibility_at_its_limits():
    steady = moments([("a", [(100, 0.1), (50, 0.1)]), ("b", [(80, 0.4), (10, 0.4)])])
    assert margin_credibility(steady) == 0.0  # no noise: every account keeps its own rate
    noise = moments([("a", [(100, 0.1), (100, 0.5)]), ("b", [(100, 0.5), (100, 0.1)])])
    assert margin_credibility(noise) == np.inf  # same mean rate: all noise, pool everything
    assert margin_credibility(moments([("a", [(100, 0.1)]), ("b", [(50, 0.3)])])) is None
    assert margin_credibility(moments([("a", [(100, 0.1), (100, 0.3)])])) is None


def test_profit_rate_shrinks_by_the_learned_credibility():
    features = pd.DataFrame({"margin_rate": [0.02, 0.02, np.nan], "value_total": [300.0, 100.0, 50.0]})
    model = KeyLTVModel("trailing", None, None, None, None, 365, date(2024, 1, 1), [],
                        margin_rate=0.2, margin_credibility=100.0,
                        book_medians={"value_total": 1e6})
    rates = model._shrunk_margin_rate(features)
    np.testing.assert_allclose(rates, [0.75 * 0.02 + 0.25 * 0.2, 0.5 * 0.02 + 0.5 * 0.2, 0.2])
    above = features.assign(margin_rate=[3.0, -2.0, np.nan])  # margins beyond the amount
    np.testing.assert_allclose(model._shrunk_margin_rate(above)[:2],
                               [0.75 * 1.0 + 0.25 * 0.2, 0.5 * -1.0 + 0.5 * 0.2])
    model.margin_credibility = np.inf
    np.testing.assert_allclose(model._shrunk_margin_rate(features), [0.2, 0.2, 0.2])
    del model.margin_credibility  # a bundle saved before the field: the median rule
    np.testing.assert_allclose(model._shrunk_margin_rate(features)[0],
                               300 / (300 + 1e6) * 0.02 + 1e6 / (300 + 1e6) * 0.2)


def test_without_classifiers_decline_risk_is_the_count_models_chance(short_log):
    from keyltv.models.bundle import fallback_event_scores
    from keyltv.models.probabilistic import ProbabilisticLTV

    features = training_data(short_log, date(2021, 10, 1), Config(horizon_days=182), None).current
    mbg = ProbabilisticLTV(kind="mbgnbd", horizon_days=182).fit(features)
    model = KeyLTVModel("mbgnbd", mbg, mbg, None, None, 182, date(2021, 10, 1),
                        list(features.columns), decline_ratio=0.5)
    out = model.predict(features)
    trailing = features["trailing_value"].clip(lower=0)
    curve = fallback_event_scores(trailing, mbg.predict(features), out["p_alive"])
    chance = mbg.event_probabilities(features, trailing, decline_ratio=0.5)["decline"]
    np.testing.assert_array_equal(out["decline_risk"], chance)
    np.testing.assert_array_equal(out["growth_potential"], curve[1])  # growth: the curve
    assert not np.array_equal(chance, curve[0])
    # A bundle saved before stop 24 has no decline ratio: it keeps 1 - P(alive).
    model.decline_ratio = None
    np.testing.assert_array_equal(model.predict(features)["decline_risk"], curve[0])
