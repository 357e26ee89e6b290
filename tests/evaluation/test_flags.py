from datetime import date

import numpy as np
import pandas as pd
import pytest

from keyltv.config import Config


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
