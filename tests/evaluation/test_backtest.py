from datetime import date

import numpy as np
import pandas as pd
import pytest

from keyltv.config import Config
from keyltv.data.io import load_accounts, load_transactions
from keyltv.data.schema import InputError
from keyltv.data.simulate import simulate_b2b
from keyltv.evaluation.backtest import (
    backtest,
    choose_champion,
    evaluate_origin,
    rolling_origins,
    select_champion,
    validation_horizon,
)

FAST = Config(horizon_days=182, models=("trailing", "bgnbd", "lightgbm"),
              training={"n_cutoffs": 2, "cutoff_step_days": 91})


@pytest.fixture(scope="module")
def sim():
    tx, accounts = simulate_b2b(300, seed=2)
    return load_transactions(tx), load_accounts(accounts)


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


def test_validation_horizon_shrinks_on_short_histories():
    cfg = Config(horizon_days=365)
    assert validation_horizon(date(2020, 1, 1), date(2023, 1, 1), cfg) == 365
    assert validation_horizon(date(2020, 1, 1), date(2020, 10, 1), cfg) == 137
    with pytest.raises(InputError, match="too short"):
        validation_horizon(date(2020, 1, 1), date(2020, 2, 1), cfg)


def test_champion_is_never_the_naive_peer_when_others_fit(sim):
    log, accounts = sim
    result, champion = select_champion(log, date(2024, 1, 1), FAST, accounts)
    assert champion in ("bgnbd", "lightgbm", "blend")
    assert result.cutoff == date(2023, 7, 3)


def test_selection_offers_a_cross_fitted_blend_and_the_origin_reuses_its_weights(sim):
    log, accounts = sim
    result, _ = select_champion(log, date(2024, 1, 1), FAST, accounts)
    assert "blend" in result.table.index
    weights = result.blend_weights
    assert weights and set(weights) <= {"trailing", "bgnbd", "lightgbm"}
    assert all(w > 0 for w in weights.values())
    # The table row is out-of-fold: it differs from the in-sample blend of the holdout.
    in_sample = sum(w * result.predictions[m].clip(lower=0) for m, w in weights.items())
    assert not np.allclose(result.predictions["blend"], in_sample)

    origin = evaluate_origin(log, date(2024, 1, 1), FAST, accounts)
    outer = origin.outer
    assert "blend" in outer.table.index
    expected = sum(w * outer.predictions[m].clip(lower=0)
                   for m, w in origin.selection.blend_weights.items())
    np.testing.assert_allclose(outer.predictions["blend"], expected)


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


def test_evaluate_origin_adds_the_nested_champion_with_coverage(sim):
    log, accounts = sim
    result = evaluate_origin(log, date(2024, 1, 1), FAST, accounts)
    row = result.table.loc["keyltv"]
    champion_row = result.table.loc[result.champion]
    assert row["normalized_gini"] == champion_row["normalized_gini"]
    assert 0.5 <= result.coverage <= 1.0
    assert set(result.flags) >= {"at_risk_precision", "high_potential_recall"}


def test_rolling_origins():
    assert rolling_origins(date(2024, 1, 1), 3, 10) == [date(2023, 12, 12), date(2023, 12, 22),
                                                        date(2024, 1, 1)]
