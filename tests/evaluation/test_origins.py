from datetime import date

import pandas as pd

from keyltv.data.transactions import load_transactions
from keyltv.evaluation.origins import evaluate_origin, rolling_origins
from tests.evaluation.conftest import FAST


def test_evaluate_origin_adds_the_nested_champion_with_coverage(sim):
    log, accounts = sim
    result = evaluate_origin(log, date(2024, 1, 1), FAST, accounts)
    row = result.table.loc["keyltv"]
    champion_row = result.table.loc[result.champion]
    assert row["normalized_gini"] == champion_row["normalized_gini"]
    assert 0.5 <= result.coverage <= 1.0
    assert set(result.flags) >= {"at_risk_precision", "high_potential_recall"}
    # The flags are judged at the thresholds `keyltv score` would use there, each with
    # where it came from.
    for field in ("at_risk_decline", "high_potential_growth"):
        assert 0 <= result.flags[f"threshold_{field}"] <= 1
        assert result.threshold_sources[field] in (
            "expected precision", "learned in training", "the config")


def test_rolling_origins():
    assert rolling_origins(date(2024, 1, 1), 3, 10) == [date(2023, 12, 12), date(2023, 12, 22),
                                                        date(2024, 1, 1)]


def test_season_ratios_put_the_year_before_beside_the_prediction_and_the_truth():
    from keyltv.evaluation.origins import season_ratios
    from tests.conftest import frame

    log = load_transactions(frame([("a", "2023-01-02", 10.0), ("a", "2023-03-10", 40.0),
                                   ("a", "2024-02-01", 7.0)]), label="season")
    predictions = pd.DataFrame({"trailing_value": [7.0], "m": [14.0], "actual": [21.0]},
                               index=pd.Index(["a"], name="customer_id"))
    got = season_ratios(log, date(2024, 3, 2), 60, predictions, "m")
    assert got == {"year_ago": 4.0, "predicted": 2.0, "realized": 3.0}
    # A log that does not reach back a year and a horizon: nothing to compare.
    assert season_ratios(log, date(2024, 3, 1), 60, predictions, "m") == {}
