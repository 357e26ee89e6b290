"""The scikit-learn estimator contract, checked on every keyltv model.

``parametrize_with_checks`` feeds bare numpy arrays; keyltv models read named feature
columns (``frequency``, ``trailing_value``...) from DataFrames on purpose, so the same
contract is checked here by hand: keyword-only init that only stores, ``clone``,
``get_params``/``set_params``, ``fit`` returns self, NotFittedError before fit, and
identical predictions for the same seed.
"""

from datetime import date

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from keyltv.data.accounts import load_accounts
from keyltv.data.simulate import simulate_b2b
from keyltv.data.transactions import load_transactions
from keyltv.features import training_frame, with_attributes
from keyltv.models import (
    GBMClassifier,
    GBMRegressor,
    HybridRegressor,
    ProbabilisticLTV,
    TrailingValueRegressor,
)


@pytest.fixture(scope="module")
def stacked():
    tx, accounts = simulate_b2b(400, seed=5)
    log = load_transactions(tx)
    cutoffs = [date(2023, 7, 1), date(2023, 1, 1)]
    X, y = training_frame(log, cutoffs, 182)
    X = with_attributes(X, load_accounts(accounts))
    return X, y["value"].to_numpy()


ESTIMATORS = [
    TrailingValueRegressor(),
    ProbabilisticLTV(kind="bgnbd", horizon_days=182),
    GBMRegressor(n_estimators=30, random_state=3),
    GBMRegressor(n_estimators=30, run_rate_offset=True, horizon_days=182, random_state=3),
    HybridRegressor(n_estimators=30, horizon_days=182, random_state=3),
    HybridRegressor(n_estimators=30, horizon_days=182, run_rate_offset=True, random_state=3),
]


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_estimator_contract(estimator, stacked):
    X, y = stacked
    fresh = clone(estimator)
    assert fresh.get_params() == estimator.get_params()
    with pytest.raises(NotFittedError):
        fresh.predict(X)
    assert fresh.fit(X, y) is fresh
    first = fresh.predict(X)
    assert first.shape == (len(X),) and np.isfinite(first).all() and (first >= 0).all()
    again = clone(estimator).fit(X, y).predict(X)
    np.testing.assert_array_equal(first, again)
    assert fresh.set_params(**fresh.get_params()) is fresh


def test_models_reject_missing_columns(stacked):
    X, y = stacked
    with pytest.raises(ValueError, match="'trailing_value' is missing"):
        TrailingValueRegressor().fit(X.drop(columns="trailing_value"))
    with pytest.raises(TypeError, match="expects a pandas DataFrame"):
        GBMRegressor().fit(X.to_numpy(), y)


def test_gbm_beats_nothing_but_learns_something(stacked):
    # A fitted GBM ranks accounts better than chance on its own training rows.
    from keyltv.evaluation.metrics import normalized_gini

    X, y = stacked
    pred = GBMRegressor(n_estimators=50).fit(X, y).predict(X)
    assert normalized_gini(y, pred) > 0.5


def test_unseen_category_at_predict_time_is_missing_not_an_error(stacked):
    X, y = stacked
    model = GBMRegressor(n_estimators=20).fit(X, y)
    other = X.head(5).copy()
    other["attr_industry"] = "space mining"
    assert np.isfinite(model.predict(other)).all()


def test_classifier_needs_two_classes(stacked):
    X, _ = stacked
    with pytest.raises(ValueError, match="need exactly two classes"):
        GBMClassifier().fit(X, np.zeros(len(X)))
    with pytest.raises(ValueError, match="need exactly two classes"):
        GBMClassifier().fit(X.head(0), np.zeros(0))
    with pytest.raises(ValueError, match="need exactly two classes"):
        GBMClassifier().fit(X, np.arange(len(X)) % 3)
    with pytest.raises(ValueError, match="missing labels"):
        GBMClassifier().fit(X, np.where(np.arange(len(X)) == 2, None, np.arange(len(X)) % 2))
    proba = GBMClassifier(n_estimators=20).fit(X, X["trailing_value"] > 1000).predict_proba(X)
    assert proba.shape == (len(X), 2) and np.allclose(proba.sum(axis=1), 1)


def test_the_year_rhythm_is_an_input_of_the_event_classifiers_only(stacked):
    # Measured: it ranks growth better, and left in the value models it made their
    # decile MAPE worse (see EVENT_ONLY_FEATURES); a scoring frame still carries it.
    X, y = stacked
    assert "rhythm_365d" in X.columns
    for value_model in (GBMRegressor(n_estimators=5), HybridRegressor(n_estimators=5,
                                                                       horizon_days=182)):
        names = list(value_model.fit(X, y).feature_names_in_)
        assert "rhythm_365d" not in names and "rhythm_90d" in names
    events = GBMClassifier(n_estimators=5).fit(X, X["trailing_value"] > 1000)
    assert "rhythm_365d" in events.feature_names_in_


def test_hybrid_keeps_latest_probabilistic_model(stacked):
    X, y = stacked
    model = HybridRegressor(n_estimators=20, horizon_days=182).fit(X, y)
    latest = X[X["cutoff"] == X["cutoff"].max()]
    refit = ProbabilisticLTV(horizon_days=182).fit(latest)
    assert model.prob_model_.params_ == refit.params_


def test_early_stopping_holds_out_whole_accounts_and_keeps_fewer_trees(stacked, monkeypatch):
    from keyltv.models import gbm

    X, y = stacked
    model = GBMRegressor(random_state=3).fit(X, y)
    assert 1 <= model.n_trees_ < model.n_estimators
    held = model._held_out(X.index, y)
    # Every row of an account is on one side: the stacked cutoffs repeat accounts.
    per_account = pd.Series(held, index=X.index).groupby(level=0).nunique()
    assert (per_account == 1).all() and X.index.duplicated().any()
    assert 0.1 < held.mean() < 0.3
    # Without early stopping: the fixed size; above REFIT_MAX_ROWS: the stopped model kept.
    assert GBMRegressor(n_estimators=30, early_stopping_rounds=None).fit(X, y).n_trees_ == 30
    monkeypatch.setattr(gbm, "REFIT_MAX_ROWS", 10)
    kept = GBMRegressor(random_state=3).fit(X, y)
    assert kept.n_trees_ == kept.model_.best_iteration_
    assert kept.n_trees_ == pytest.approx(model.n_trees_ * 0.8, abs=1)


def test_run_rate_annualizes_young_accounts_only():
    from keyltv.models.gbm import MIN_RUN_RATE_DAYS, run_rate

    rate = run_rate([365.0, 365.0, 10.0, 50.0, np.nan, 7.0], [1000, 365, 73, 1, 200, np.nan], 365)
    # Full history: as is; 73 days: x5; a day-old account counts as MIN_RUN_RATE_DAYS
    # old; missing value is 0; missing tenure means a full horizon.
    np.testing.assert_allclose(rate, [365, 365, 50, 50 * 365 / MIN_RUN_RATE_DAYS, 0, 7])
    with pytest.raises(ValueError, match="run_rate: trailing_value has 1 infinite"):
        run_rate([np.inf, 1.0], [10, 10], 365)


def test_run_rate_offset_is_where_the_boosting_starts(stacked):
    from keyltv.models.gbm import idle_fade, run_rate

    X, y = stacked
    model = GBMRegressor(n_estimators=1, early_stopping_rounds=None, learning_rate=1e-9,
                         run_rate_offset=True, horizon_days=182, random_state=3).fit(X, y)
    # With one vanishing tree the prediction is the offset: run rate plus the floor,
    # which fades after a horizon without an order.
    fade = idle_fade(X["days_since_last_order"], 182)
    assert fade.min() < 0.5  # the fixture has accounts idle for more than two horizons
    start = run_rate(X["trailing_value"], X["tenure_days"], 182) + model.offset_floor_ * fade
    np.testing.assert_allclose(model.predict(X), start, rtol=1e-6)
    assert model.offset_floor_ == pytest.approx(0.05 * np.clip(y, 0, None).mean())
    # Same split of the log prediction into contributions as without the offset.
    contrib = model.contributions(X.head(20))
    np.testing.assert_allclose(np.exp(contrib.sum(axis=1)), model.predict(X.head(20)), rtol=1e-6)
    assert contrib["bias"].iloc[0] == pytest.approx(model.offset_mean_, abs=1e-6)
    with pytest.raises(ValueError, match="'tenure_days' is missing"):
        GBMRegressor(run_rate_offset=True).fit(X.drop(columns="tenure_days"), y)
    with pytest.raises(ValueError, match="log link .* got 'regression'"):
        GBMRegressor(run_rate_offset=True, objective="regression").fit(X, y)


def test_run_rate_offset_ranks_growing_accounts_beyond_the_training_range(stacked):
    # Trees cannot extrapolate: an account twice as big as any seen in training gets
    # a leaf value from the mean; from its run rate, it keeps its lead.
    X, y = stacked
    plain = GBMRegressor(random_state=3).fit(X, y)
    offset = GBMRegressor(run_rate_offset=True, horizon_days=182, random_state=3).fit(X, y)
    top = X.loc[[X["trailing_value"].idxmax()]].head(1)
    bigger = top.copy()
    money = [c for c in X.columns if c.startswith(("value", "ewm_value")) or c in (
        "trailing_value", "previous_value", "avg_order_value", "repeat_order_value",
        "value_same_window_last_year")]
    bigger[money] *= 2
    assert plain.predict(bigger)[0] == pytest.approx(plain.predict(top)[0], rel=0.05)
    assert offset.predict(bigger)[0] > 1.5 * offset.predict(top)[0]


def test_the_floor_keeps_falling_for_accounts_idle_longer_than_any_in_training(stacked):
    # The longest-idle accounts at scoring were idle longer than anyone at the training
    # cutoffs; the trees give them the longest-idle leaf, the fading floor less.
    X, y = stacked
    model = GBMRegressor(run_rate_offset=True, horizon_days=182, random_state=3).fit(X, y)
    idle = X[X["trailing_value"] <= 0]
    longest = idle.loc[[idle["days_since_last_order"].idxmax()]].head(1)
    longer = longest.assign(days_since_last_order=longest["days_since_last_order"] + 182,
                            recency=longest["recency"], tenure_days=longest["tenure_days"] + 182,
                            T=longest["T"] + 182)
    ratio = model.predict(longer)[0] / model.predict(longest)[0]
    assert ratio == pytest.approx(np.exp(-1), rel=0.05)  # one more horizon: 1/e of it
    # The contributions still add up, the fading counted on the idle time.
    contrib = model.contributions(pd.concat([longest, longer]))
    np.testing.assert_allclose(np.exp(contrib.sum(axis=1)),
                               model.predict(pd.concat([longest, longer])), rtol=1e-6)
    assert contrib["days_since_last_order"].iloc[1] < contrib["days_since_last_order"].iloc[0]
    # A model fitted before the fading floor keeps its flat one.
    flat = model.predict(longest)
    del model.__dict__["offset_fade_days_"]
    assert model.predict(longer)[0] > flat[0] * 0.9


def test_growth_odds_keep_falling_for_accounts_idle_longer_than_any_in_training(stacked):
    X, y = stacked
    events = y > np.median(y)
    model = GBMClassifier(idle_fade_days=182, random_state=3).fit(X, events)
    idle = X[X["trailing_value"] <= 0]
    longest = idle.loc[[idle["days_since_last_order"].idxmax()]].head(1)
    longer = longest.assign(days_since_last_order=longest["days_since_last_order"] + 182)
    odds = [p / (1 - p) for p in model.predict_proba(pd.concat([longest, longer]))[:, 1]]
    assert odds[1] / odds[0] == pytest.approx(np.exp(-1), rel=0.05)  # past the last leaf
    # The contributions add up to the logit, the fading start on the idle time.
    contrib = model.contributions(pd.concat([longest, longer]))
    np.testing.assert_allclose(contrib.sum(axis=1), np.log(odds), rtol=1e-6)
    assert contrib["days_since_last_order"].iloc[1] < contrib["days_since_last_order"].iloc[0]
    # Without it (and in a model pickled before it) every row starts from the mean.
    plain = GBMClassifier(random_state=3).fit(X, events)
    del plain.__dict__["idle_fade_days"]
    p = plain.predict_proba(pd.concat([longest, longer]))[:, 1]
    assert p[1] == pytest.approx(p[0], rel=0.05)
    with pytest.raises(ValueError, match="'days_since_last_order' is missing"):
        GBMClassifier(idle_fade_days=182).fit(X.drop(columns="days_since_last_order"), events)


def test_a_fading_start_too_small_to_grow_a_tree_gives_the_event_rate(stacked):
    # Under min_child_samples rows a leaf no tree grows, and the start is the score: it
    # was logit 0, so 0.5 for every active account, exactly the high-potential
    # threshold, on a 12-account book whose events happened at 0.17 (audit 28).
    X, y = stacked
    small = X.head(60)
    events = np.arange(len(small)) % 5 == 0
    model = GBMClassifier(idle_fade_days=182, random_state=3).fit(small, events)
    active = small[small["days_since_last_order"] <= 182]
    np.testing.assert_allclose(model.predict_proba(active)[:, 1], 0.2, rtol=1e-6)
    assert model.start_logit_ == pytest.approx(np.log(0.2 / 0.8))
    # Where the trees split, they learn the rate from a start of 0 (as benchmarked).
    assert GBMClassifier(idle_fade_days=182, random_state=3).fit(
        X, y > np.median(y)).start_logit_ == 0.0
    contrib = model.contributions(active)  # the rate on the bias, not on the idle time
    np.testing.assert_allclose(contrib["bias"], np.log(0.2 / 0.8), rtol=1e-6)
    np.testing.assert_allclose(contrib["days_since_last_order"], 0.0, atol=1e-9)


def test_model_pickled_before_the_offset_existed_still_predicts(stacked):
    X, y = stacked
    model = GBMRegressor(n_estimators=20, random_state=3).fit(X, y)
    expected = model.predict(X)
    del model.__dict__["run_rate_offset"], model.__dict__["horizon_days"]
    np.testing.assert_array_equal(model.predict(X), expected)
    assert model.contributions(X.head(3)).shape[0] == 3


def test_contract_edges_from_the_api_audit(stacked):
    X, y = stacked
    events = (y > np.median(y)).astype(int)
    with pytest.raises(NotFittedError):
        GBMClassifier().predict(X)
    with pytest.raises(TypeError, match="expects a pandas DataFrame"):
        HybridRegressor(n_estimators=5, horizon_days=182).fit(X, y).predict(X.to_numpy())
    # scikit-learn's "unseeded" and a RandomState are accepted, as by other estimators.
    for seed in (None, np.random.RandomState(0)):
        assert GBMRegressor(n_estimators=5, random_state=seed).fit(X, y).predict(X).shape == y.shape
    with pytest.raises(ValueError, match="1 missing or infinite"):
        GBMRegressor(n_estimators=5).fit(X, np.where(np.arange(len(y)) == 3, np.nan, y))
    assert GBMClassifier(n_estimators=5).fit(X, events).predict(X).shape == y.shape
    # Labels keep their type, as in scikit-learn: bool events predict bools, the same
    # probabilities as the 0/1 events.
    as_bool = GBMClassifier(n_estimators=5).fit(X, events.astype(bool))
    assert as_bool.predict(X).dtype == bool
    np.testing.assert_array_equal(as_bool.predict_proba(X),
                                  GBMClassifier(n_estimators=5).fit(X, events).predict_proba(X))
    prob = ProbabilisticLTV(kind="bgnbd", horizon_days=182).fit(X)
    np.testing.assert_array_equal(prob.predict_orders(X.head(3), horizon_days=0), 0.0)


def test_gbm_refuses_a_target_without_value_before_lightgbm_sees_it(stacked):
    # LightGBM's Tweedie objective fails on a zero total with its own error (not a
    # ValueError) and a "[LightGBM] [Fatal]" line; a backtest then died instead of
    # skipping the model.
    X, y = stacked
    for model in (GBMRegressor(n_estimators=5), HybridRegressor(n_estimators=5, horizon_days=182)):
        with pytest.raises(ValueError, match=r"y has no positive value in its \d+ rows"):
            model.fit(X, np.where(y > 0, -1.0, 0.0))
        with pytest.raises(ValueError, match=rf"y must be one value per row of X \({len(X)}\), "
                                             rf"got shape \({len(X) - 5},\)"):
            model.fit(X, y[:-5])


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_no_rows_predict_no_values(estimator, stacked):
    X, y = stacked
    model = clone(estimator).fit(X, y)
    assert model.predict(X.head(0)).shape == (0,)
    if hasattr(model, "contributions"):
        contributions = model.contributions(X.head(0))
        assert contributions.shape[0] == 0 and contributions.columns[-1] == "bias"


def test_classifier_on_no_rows(stacked):
    X, y = stacked
    model = GBMClassifier(n_estimators=5).fit(X, y > np.median(y))
    assert model.predict_proba(X.head(0)).shape == (0, 2)
    assert model.predict(X.head(0)).shape == (0,)


def test_infinite_features_are_refused_and_missing_ones_are_documented(stacked):
    X, y = stacked
    with pytest.raises(ValueError, match="GBMRegressor: feature column 'trailing_value' has 2 "
                                         "infinite value"):
        GBMRegressor(n_estimators=5).fit(
            X.assign(trailing_value=np.where(np.arange(len(X)) < 2, np.inf, X["trailing_value"])), y)
    classifier = GBMClassifier(n_estimators=5).fit(X, y > np.median(y))
    with pytest.raises(ValueError, match="GBMClassifier: feature column 'value_90d' has 1 "
                                         "infinite value"):
        classifier.predict_proba(X.head(3).assign(value_90d=[1.0, np.inf, 2.0]))
    offset = GBMRegressor(n_estimators=5, run_rate_offset=True, horizon_days=182).fit(X, y)
    rows = X.head(3).copy()
    with pytest.raises(ValueError, match="'tenure_days' has 1 infinite"):
        offset.predict(rows.assign(tenure_days=[1.0, -np.inf, 3.0]))
    # LightGBM takes missing features natively; the offset reads a missing trailing
    # value as 0 (the floor), so no prediction is NaN or infinite.
    gaps = rows.assign(trailing_value=np.nan, tenure_days=np.nan)
    predicted = offset.predict(gaps)
    assert np.isfinite(predicted).all() and (predicted > 0).all()
    assert np.isfinite(offset.contributions(gaps).to_numpy()).all()
    # The naive peer: a missing trailing value is nothing in the window, not NaN.
    trailing = TrailingValueRegressor().fit(X)
    assert trailing.predict(rows.assign(trailing_value=[np.nan, -3.0, 5.0])).tolist() == [0.0, 0.0, 5.0]
    with pytest.raises(ValueError, match="TrailingValueRegressor: feature column 'trailing_value' has "
                                         "1 infinite"):
        trailing.predict(rows.assign(trailing_value=[np.inf, 1.0, 5.0]))


def test_hybrid_refuses_missing_probabilistic_inputs_instead_of_dropping_them(stacked):
    # A cutoff whose BG/NBD could not be fitted left its inputs missing without a word.
    X, y = stacked
    with pytest.raises(ValueError, match="HybridRegressor: feature column 'frequency' has 1 "
                                         "missing or infinite"):
        HybridRegressor(n_estimators=5, horizon_days=182).fit(
            X.assign(frequency=np.where(np.arange(len(X)) == 0, np.nan, X["frequency"])), y)


def test_earlier_models_pickled_with_the_hybrid_in_gbm_still_unpickle():
    # A registered bundle names the class where it lived (a pickle stores the path).
    import pickle

    assert pickle.loads(b"ckeyltv.models.gbm\nHybridRegressor\n.") is HybridRegressor
    # ... and the event classifier, since moved to keyltv.models.events.
    assert pickle.loads(b"ckeyltv.models.gbm\nGBMClassifier\n.") is GBMClassifier


def test_a_misspelt_kind_or_a_horizon_below_a_day_is_refused_at_fit(stacked):
    # The hybrid read the kind's ValueError as "no repeat buyer at this cutoff" and
    # fitted a plain GBM; a horizon of 0 predicted NaN (run rate) or 0 everywhere (audit 28).
    X, y = stacked
    with pytest.raises(ValueError, match="kind='bgndb' is not one of"):
        HybridRegressor(kind="bgndb", n_estimators=5).fit(X, y)
    with pytest.raises(ValueError, match="horizon_days 0: expected a whole number of days"):
        GBMRegressor(run_rate_offset=True, horizon_days=0, n_estimators=5).fit(X, y)
    with pytest.raises(ValueError, match="horizon_days -365: expected a whole number"):
        ProbabilisticLTV(horizon_days=-365).fit(X)
    # One row: LightGBM's own "Check failed: (num_data) > (0)" before.
    with pytest.raises(ValueError, match="GBMRegressor: needs at least 2 training rows, got 1"):
        GBMRegressor(n_estimators=5).fit(X.head(1), y[:1])
