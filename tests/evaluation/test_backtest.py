from datetime import date, timedelta
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from keyltv.config import Config
from keyltv.data.accounts import load_accounts
from keyltv.data.schema import InputError
from keyltv.data.simulate import simulate_b2b
from keyltv.data.transactions import load_transactions
from keyltv.evaluation.backtest import (
    backtest,
    choose_champion,
    evaluate_origin,
    rolling_origins,
    select_champion,
    validation_horizon,
)
from keyltv.features import training_cutoffs
from keyltv.models.blend import components_of

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
    assert "blend" in result.table.index
    weights = result.blend_weights
    parts = result.table.loc[components_of(weights), "fit_seconds"].sum()
    assert result.table.loc["blend", "fit_seconds"] == pytest.approx(parts)  # its parts' cost
    assert weights and set(components_of(weights)) <= {"trailing", "bgnbd", "lightgbm"}
    assert all(w > 0 for w in weights.values())
    # The table row is out-of-fold: it differs from the in-sample blend of the holdout.
    assert not np.allclose(result.predictions["blend"], _weighted(result.predictions, weights))

    origin = evaluate_origin(log, date(2024, 1, 1), FAST, accounts)
    outer = origin.outer
    assert "blend" in outer.table.index
    np.testing.assert_allclose(outer.predictions["blend"],
                               _weighted(outer.predictions, origin.selection.blend_weights))


def _weighted(predictions, weights):
    """Sum of weight x prediction, a stratified weight counting in its stratum only."""
    active = predictions["trailing_value"] > 0
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


def _toy_result():
    from keyltv.evaluation.backtest import BacktestResult

    idx = pd.Index([f"a{i}" for i in range(10)])
    predictions = pd.DataFrame({"actual": 1.0, "trailing_value": 100.0,
                                "m": [150.0] * 5 + [50.0] * 5}, index=idx)
    events = pd.DataFrame({
        "decline": [1, 1, 0, 1, 0, 0, 0, 0, 0, 0],
        "decline_risk": [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05],
        "growth": [1, 0, 0, 0, 0, 1, 1, 1, 1, 1],
        "growth_potential": [0.9, 0.8, 0.7, 0.6, 0.5, 0.99, 0.98, 0.97, 0.96, 0.95],
    }, index=idx).astype({"decline": bool, "growth": bool})
    return BacktestResult(date(2024, 1, 1), 30, pd.DataFrame(), predictions, events, {})


def _calibrated_result(n=2000, informative=True, seed=0):
    """Every account valuable; decline happens with probability = decline risk."""
    from keyltv.evaluation.backtest import BacktestResult

    rng = np.random.default_rng(seed)
    idx = pd.Index([f"a{i}" for i in range(n)])
    risk = rng.random(n)
    decline = rng.random(n) < (risk if informative else 0.3)
    predictions = pd.DataFrame({"actual": 1.0, "trailing_value": 100.0, "m": 50.0}, index=idx)
    events = pd.DataFrame({"decline": decline, "decline_risk": risk,
                           "growth": False, "growth_potential": 0.0}, index=idx)
    return BacktestResult(date(2024, 1, 1), 30, pd.DataFrame(), predictions, events, {})


def test_flag_threshold_keeps_the_precision_target_with_confidence():
    from keyltv.evaluation.flags import learn_flag_thresholds

    cfg = Config(flags={"valuable_share": 1.0, "at_risk_precision": 0.6})
    threshold = learn_flag_thresholds(_calibrated_result(), "m", cfg)["at_risk_decline"]
    # Flagging risk >= t has precision (1 + t) / 2: exactly 0.6 at t = 0.2. The 95% lower
    # bound needs a margin, which shrinks with the number of flagged accounts.
    assert 0.2 < threshold < 0.3
    # Nothing is learned for a flag the predictions are never above trailing for.
    assert "high_potential_growth" not in learn_flag_thresholds(_calibrated_result(), "m", cfg)


def test_unreachable_or_unset_precision_targets_keep_the_fixed_threshold():
    from keyltv.evaluation.flags import learn_flag_thresholds

    noise = _calibrated_result(informative=False)  # a 30 % event the score knows nothing of
    cfg = Config(flags={"valuable_share": 1.0, "at_risk_precision": 0.6})
    assert learn_flag_thresholds(noise, "m", cfg) == {}
    unset = Config(flags={"valuable_share": 1.0, "at_risk_precision": None})
    assert learn_flag_thresholds(_calibrated_result(), "m", unset) == {}


@pytest.mark.parametrize("rate", [0.9, 0.66])
def test_no_threshold_is_learned_when_flagging_everyone_meets_the_target(rate):
    from keyltv.evaluation.flags import learn_flag_thresholds

    common = _calibrated_result()
    # A common decline that the score still ranks (CDNOW: 0.66): without the cap on the
    # flagged share, the learned threshold is the lowest score here (0.0002), which
    # flags every account.
    risk = common.events["decline_risk"].to_numpy()
    chance = np.where(risk < 0.05, 0.0, rate + 0.3 * (risk - 0.5))
    common.events["decline"] = np.random.default_rng(1).random(len(risk)) < chance
    cfg = Config(flags={"valuable_share": 1.0, "at_risk_precision": 0.6})
    assert learn_flag_thresholds(common, "m", cfg) == {}


def test_wilson_lower_bound():
    from keyltv.evaluation.flags import wilson_lower_bound

    bound = wilson_lower_bound(np.array([0.5, 0.5, 1.0]), np.array([100, 10_000, 5]))
    assert bound[0] == pytest.approx(0.4188, abs=1e-3)
    assert bound[1] == pytest.approx(0.4918, abs=1e-3)  # more trials, a tighter bound
    assert bound[2] == pytest.approx(0.6490, abs=1e-3)  # 5 of 5 is not certainty


def test_flag_metrics_apply_given_thresholds():
    from keyltv.evaluation.flags import flag_metrics

    cfg = Config(flags={"valuable_share": 1.0})
    metrics = flag_metrics(_toy_result(), "m", cfg, {"at_risk_decline": 0.5,
                                                    "high_potential_growth": 0.8})
    # Top 5 by decline risk hold 3 of the 3 decliners.
    assert metrics["at_risk_flagged"] == 5 and metrics["at_risk_precision"] == pytest.approx(0.6)
    assert metrics["at_risk_recall"] == pytest.approx(1.0)
    assert metrics["at_risk_best_recall_p60"] == pytest.approx(1.0)
    # Only the five accounts predicted above trailing can be high potential.
    assert metrics["high_potential_flagged"] == 2
    assert metrics["high_potential_precision"] == pytest.approx(0.5)


def test_season_ratios_put_the_year_before_beside_the_prediction_and_the_truth():
    from keyltv.evaluation.backtest import season_ratios
    from tests.conftest import frame

    log = load_transactions(frame([("a", "2023-01-02", 10.0), ("a", "2023-03-10", 40.0),
                                   ("a", "2024-02-01", 7.0)]), label="season")
    predictions = pd.DataFrame({"trailing_value": [7.0], "m": [14.0], "actual": [21.0]},
                               index=pd.Index(["a"], name="customer_id"))
    got = season_ratios(log, date(2024, 3, 2), 60, predictions, "m")
    assert got == {"year_ago": 4.0, "predicted": 2.0, "realized": 3.0}
    # A log that does not reach back a year and a horizon: nothing to compare.
    assert season_ratios(log, date(2024, 3, 1), 60, predictions, "m") == {}
