import numpy as np
import pandas as pd

from keyltv.scoring.reasons import describe_feature, top_reasons

ROW = pd.Series({"days_since_last_order": 120.0, "recency_ratio": 3.0, "rhythm_90d": 0.5,
                 "trend": np.log(0.5), "previous_value": 100.0, "trailing_value": 50.0,
                 "attr_industry": "retail", "value_90d": 1234.0, "margin_rate": np.nan})


def test_phrases_quote_the_accounts_own_numbers():
    assert describe_feature("recency_ratio", ROW) == "no order for 120 days, 3.0x its usual gap"
    assert describe_feature("trend", ROW) == "value down 50% on the horizon before"
    assert describe_feature("attr_industry", ROW) == "industry = retail"
    assert describe_feature("value_90d", ROW) == "value in the last 90 days: 1,234"
    assert describe_feature("margin_rate", ROW) is None
    assert describe_feature("unknown_feature", ROW) is None


def test_top_reasons_keep_positive_drivers_in_order():
    features = pd.DataFrame([ROW, ROW], index=["a", "b"])
    contributions = pd.DataFrame(
        {"recency_ratio": [2.0, -1.0], "trend": [1.0, 0.5], "attr_industry": [0.5, -0.2],
         "margin_rate": [3.0, 0.0], "bias": [9.0, 9.0]},
        index=["a", "b"],
    )
    got = top_reasons(features, contributions)
    # margin_rate has the largest push but nothing to say (NaN): skipped, not invented.
    assert got["a"] == ("no order for 120 days, 3.0x its usual gap; "
                        "value down 50% on the horizon before; industry = retail")
    assert got["b"] == "value down 50% on the horizon before"
