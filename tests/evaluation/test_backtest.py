from datetime import date, timedelta
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from keyltv.config import Config
from keyltv.data.schema import InputError
from keyltv.data.transactions import load_transactions
from keyltv.evaluation.backtest import (
    backtest,
    choose_champion,
    select_champion,
    validation_horizon,
)
from keyltv.evaluation.origins import evaluate_origin
from keyltv.features import training_cutoffs
from keyltv.models.blend import components_of
from tests.evaluation.conftest import FAST


def test_backtest_compares_every_model_on_the_same_accounts(sim):
    log, accounts = sim
    result = backtest(log, date(2024, 1, 1), FAST, accounts)
    assert list(result.table.index) == ["trailing", "bgnbd", "lightgbm"]
    p = result.predictions
    assert {"actual", "trailing_value", "trailing", "bgnbd", "lightgbm"} <= set(p.columns)
    # Every account known before the cutoff, and only those.
    daily = log.daily()
    known = daily.loc[pd.to_datetime(daily["day"]) < "2024-01-01", "customer_id"].unique()
    assert sorted(p.index) == sorted(known)
    assert result.table.loc["trailing", "normalized_gini"] > 0.5
    assert {"decline_auc", "growth_auc"} <= set(result.event_metrics)


def test_backtest_needs_a_full_holdout(sim):
    log, _ = sim
    with pytest.raises(InputError, match="ends after the last transaction"):
        backtest(log, date(2024, 9, 1), FAST)
    with pytest.raises(InputError, match="models: unknown model 'foo'; allowed: trailing"):
        backtest(log, "2024-01-01", FAST, models=("trailing", "foo"))


def test_a_model_without_value_to_learn_is_skipped_not_fatal():
    # Forty accounts order twice early in 2022, go quiet, and every fourth returns
    # after the cutoff: LightGBM's training labels (after 2022-04 and 2022-07) are all
    # 0, which LightGBM itself answered with an error that ended the whole backtest.
    rows = [(f"C{i:02d}", day, 20.0 + i) for i in range(40)
            for day in ("2022-01-10", f"2022-03-{1 + i % 28:02d}")]
    rows += [(f"C{i:02d}", "2023-02-01", 50.0) for i in range(0, 40, 4)]
    rows += [("C00", "2023-07-01", 5.0)]  # the log covers the evaluation window
    log = load_transactions(pd.DataFrame(rows, columns=["customer_id", "date", "amount"]))
    config = Config(horizon_days=182, models=("trailing", "mbgnbd", "lightgbm"),
                    training={"n_cutoffs": 2, "cutoff_step_days": 91})
    result = backtest(log, date(2023, 1, 1), config)
    assert list(result.table.index) == ["trailing", "mbgnbd"]
    assert result.skipped["lightgbm"].startswith("GBMRegressor: y has no positive value")
    # No account has trailing value at the cutoff: no decline AUC, and no error either.
    assert np.isnan(result.event_metrics["decline_auc"])


def test_validation_horizon_is_half_the_usable_history():
    cfg = Config(horizon_days=365)
    assert validation_horizon(date(2020, 1, 1), date(2023, 1, 1), cfg) == 182
    assert validation_horizon(date(2020, 1, 1), date(2020, 10, 1), cfg) == 137
    with pytest.raises(InputError, match="too short"):
        validation_horizon(date(2020, 1, 1), date(2020, 2, 1), cfg)


@pytest.mark.parametrize("history_days", [200, 300, 455, 500, 820, 1500])
def test_selection_fits_supervised_models_on_the_deployed_cutoffs(history_days):
    # The reason for half the history: the selection backtest's supervised models learn
    # from the same latest cutoff as their refit at as_of (within a day for odd halves).
    cfg = Config(horizon_days=365)
    first = date(2020, 1, 1)
    as_of = first + timedelta(days=history_days)
    log = SimpleNamespace(first_date=first, source="log")
    t = cfg.training

    def latest_cutoff(cut, horizon):  # as training_data chooses the label window
        label_days = min(horizon, (cut - first).days - t.min_feature_days)
        return training_cutoffs(log, cut, label_days, 1, t.cutoff_step_days,
                                t.min_feature_days)[0]

    h_v = validation_horizon(first, as_of, cfg)
    inner = latest_cutoff(as_of - timedelta(days=h_v), h_v)
    deployed = latest_cutoff(as_of, cfg.horizon_days)
    assert abs((inner - deployed).days) <= 1


@pytest.mark.parametrize(("as_of", "whole"), [(date(2022, 12, 1), False), (date(2023, 3, 1), True)],
                         ids=["23-months", "26-months"])
def test_selection_judges_the_event_scorer_and_run_rates_that_the_refit_deploys(sim, as_of, whole):
    # Audit 29: on a 23-month log the selection backtest (half the horizon) fitted event
    # classifiers and GBMs from run rates, judged them and learned a flag threshold on
    # their scores, where the refit at the full horizon deployed neither.
    from keyltv.models.training import fit_event_models, full_trailing_windows, training_data

    log, accounts = sim
    cfg = Config(horizon_days=365, models=("trailing", "bgnbd", "lightgbm"),
                 selection={"blend": False}, training={"n_cutoffs": 2, "cutoff_step_days": 91})
    result, _ = select_champion(log, as_of, cfg, accounts)
    refit = training_data(log, as_of, cfg, accounts)
    assert (fit_event_models(refit, cfg) is not None) is whole
    assert full_trailing_windows(refit, cfg.horizon_days) is whole
    assert result.event_metrics["event_classifiers"] == float(whole)
    assert result.models["lightgbm"].run_rate_offset is whole


def test_a_model_list_of_which_none_can_be_fitted_is_refused_naming_each_and_why(sim):
    # It failed with KeyError: 'normalized_gini', exit 1 (audit 29).
    log, accounts = sim
    cfg = Config(horizon_days=182, models=("lightgbm",), training={"min_feature_days": 2000})
    with pytest.raises(InputError, match=r"no model of the config's models could be fitted at "
                       r"the selection cutoff 2023-10-02: lightgbm: .*training.min_feature_days"):
        select_champion(log, date(2024, 1, 1), cfg, accounts)


def test_champion_is_never_the_naive_peer_when_others_fit(sim):
    log, accounts = sim
    result, champion = select_champion(log, date(2024, 1, 1), FAST, accounts)
    assert champion in ("bgnbd", "lightgbm", "blend")
    assert result.cutoff == date(2023, 10, 2)  # half the 182-day horizon before 2024-01-01


@pytest.mark.parametrize("min_stratum", [10_000, 20], ids=["one-set", "per-stratum"])
def test_selection_offers_a_cross_fitted_blend_and_the_origin_reuses_its_weights(
        sim, min_stratum, monkeypatch):
    from keyltv.models import blend

    monkeypatch.setattr(blend, "MIN_STRATUM_ACCOUNTS", min_stratum)  # 300 accounts here
    log, accounts = sim
    result, _ = select_champion(log, date(2024, 1, 1), FAST, accounts)
    assert any("." in key for key in result.blend_weights) == (min_stratum == 20)
    # Idle means a deployed horizon without an order, not the selection's half of it.
    stratified = min_stratum == 20
    assert result.blend_idle_days == (FAST.horizon_days if stratified else None)
    assert result.models["blend"].idle_days == result.blend_idle_days
    assert "blend" in result.table.index
    weights = result.blend_weights
    parts = result.table.loc[components_of(weights), "fit_seconds"].sum()
    assert result.table.loc["blend", "fit_seconds"] == pytest.approx(parts)  # its parts' cost
    assert weights and set(components_of(weights)) <= {"trailing", "bgnbd", "lightgbm"}
    assert all(w > 0 for w in weights.values())
    # The table row is out-of-fold: it differs from the in-sample blend of the holdout.
    assert not np.allclose(result.predictions["blend"],
                           _weighted(result.predictions, weights, result.data.current))

    origin = evaluate_origin(log, date(2024, 1, 1), FAST, accounts)
    outer = origin.outer
    assert "blend" in outer.table.index
    assert outer.blend_idle_days == result.blend_idle_days
    np.testing.assert_allclose(outer.predictions["blend"],
                               _weighted(outer.predictions, origin.selection.blend_weights,
                                         outer.data.current))


def _weighted(predictions, weights, features):
    """Sum of weight x prediction, a stratified weight counting in its stratum only."""
    active = (features["orders_total"] > 0) & (features["days_since_last_order"]
                                                <= FAST.horizon_days)
    inside = {"": active | True, "active": active, "idle": ~active}
    total = 0.0
    for key, w in weights.items():
        model, _, stratum = key.partition(".")
        total = total + w * predictions[model].clip(lower=0).where(inside[stratum], 0.0)
    return total


def test_blend_can_be_switched_off(sim):
    log, accounts = sim
    cfg = FAST.with_overrides(selection={"blend": False})
    result, champion = select_champion(log, date(2024, 1, 1), cfg, accounts)
    assert "blend" not in result.table.index and champion != "blend"


def test_choose_champion_respects_metric_direction():
    table = pd.DataFrame({"normalized_gini": [0.5, 0.7], "mae": [3.0, 1.0]}, index=["a", "b"])
    assert choose_champion(table, "normalized_gini") == "b"
    assert choose_champion(table, "mae") == "b"
    with pytest.raises(ValueError, match="no model has a finite"):
        choose_champion(table.assign(mae=np.nan), "mae")
