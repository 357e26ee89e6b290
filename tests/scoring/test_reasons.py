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
    assert describe_feature("value_90d", ROW) == "value 1,234 in the last 90 days"
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


def test_every_feature_has_its_own_phrase_and_none_is_read_from_a_suffix():
    from keyltv.features.definitions import FEATURE_COLUMNS
    from keyltv.scoring.reasons import PHRASES

    assert [c for c in FEATURE_COLUMNS if c not in PHRASES] == []
    row = pd.Series({"value_centroid_ratio_730d": 0.8, "ewm_value_90d": 46267.0,
                     "ewm_orders_180d": 11.2, "orders_30d": 2.0, "attr_employees": 12188.0,
                     "attr_share": 0.125, "orders_total": 14.0, "tenure_days": 400.0})
    # These once read as "value in the last 30 days: 1" and "orders in the last 90 days".
    assert describe_feature("value_centroid_ratio_730d", row) == (
        "value weighted to recent days of the last two years (0.80x the midpoint's age)")
    assert describe_feature("ewm_value_90d", row) == (
        "recent value 46,267 (each day's value fading over 90 days)")
    assert describe_feature("ewm_orders_180d", row).startswith("recent orders weigh 11.2")
    assert describe_feature("orders_30d", row) == "2 orders in the last 30 days"
    # One order: no plural, and no "centroid" (2.0x the midpoint's age by construction).
    single = pd.Series({**row, "orders_total": 1.0, "tenure_days": 13.0, "orders_30d": 1.0,
                        "value_centroid_ratio_730d": 2.0})
    assert describe_feature("orders_total", single) == "1 order in 13 days"
    assert describe_feature("orders_30d", single) == "1 order in the last 30 days"
    assert describe_feature("value_centroid_ratio_730d", single) is None
    assert describe_feature("attr_employees", row) == "employees = 12,188"
    assert describe_feature("attr_share", row) == "share = 0.125"
    # A date attribute, as days before as_of: in words that say which way.
    dates = pd.Series({"attr_customer_since_days_before": 1234.0,
                       "attr_contract_end_days_before": -120.0})
    assert describe_feature("attr_customer_since_days_before", dates) == (
        "customer_since 1,234 days ago")
    assert describe_feature("attr_contract_end_days_before", dates) == "contract_end in 120 days"


def test_a_low_margin_account_is_told_its_margin_first():
    from keyltv.scoring.reasons import explain_flags

    class Stub:  # explains value by trailing value alone
        def explain(self, features, target):
            return pd.DataFrame({"trailing_value": 1.0}, index=features.index)

    features = pd.DataFrame([ROW, ROW], index=["a", "b"])
    scored = pd.DataFrame({"at_risk": [False, False], "high_potential": [False, False],
                           "key_account": [False, True], "low_margin_key": [True, False],
                           "predicted_value": [200.0, 100.0],
                           "predicted_profit": [6.0, 30.0]}, index=["a", "b"])
    got = explain_flags(Stub(), features, scored)
    assert got["a"] == ("predicted profit only 3% of its predicted value; "
                        "value 50 over the last horizon")
    assert got["b"] == "value 50 over the last horizon"


def test_value_change_is_quoted_from_the_two_horizons():
    # ln(1 + 202.0) - ln(1 + 100.0) reads as +99%; the value itself rose by 102%.
    row = pd.Series({"trend": np.log(203 / 101), "previous_value": 100.0, "trailing_value": 202.0})
    assert describe_feature("trend", row) == "value up 102% on the horizon before"
    gone = pd.Series({"trend": -np.log(101), "previous_value": 100.0, "trailing_value": -3.0})
    assert describe_feature("trend", gone) == "value down 100% on the horizon before"


def test_a_fact_that_points_against_its_flag_says_why_it_pushes_towards_it():
    features = pd.DataFrame([ROW], index=["a"])  # value halved, 3x overdue, slow rhythm
    contributions = pd.DataFrame({"trend": [1.0], "recency_ratio": [0.5], "rhythm_90d": [0.2]},
                                 index=["a"])
    assert top_reasons(features, contributions, target="growth")["a"] == (
        "value down 50% on the horizon before (a low base to grow from); "
        "no order for 120 days, 3.0x its usual gap (a low base to grow from); "
        "orders in the last 90 days at 0.5x its usual rhythm (a low base to grow from)")
    # The same facts point the way of a decline: told as they are.
    assert top_reasons(features, contributions, target="decline")["a"] == (
        "value down 50% on the horizon before; no order for 120 days, 3.0x its usual gap; "
        "orders in the last 90 days at 0.5x its usual rhythm")
    peak = features.assign(trailing_value=300.0, rhythm_90d=2.0)
    assert top_reasons(peak, contributions, target="decline")["a"] == (
        "value up 200% on the horizon before (a peak to fall back from); "
        "no order for 120 days, 3.0x its usual gap; "
        "orders in the last 90 days at 2.0x its usual rhythm (a peak to fall back from)")
    assert top_reasons(peak, contributions)["a"].startswith("value up 200% on the horizon before;")


def test_no_low_base_or_peak_is_claimed_against_the_value_itself():
    # Audit 29: value up 177%, yet "orders ... at 0.5x its usual rhythm (a low base to
    # grow from)". The events compare values: a rise is no low base, a fall no peak.
    risen = pd.DataFrame([ROW], index=["a"]).assign(trailing_value=277.0)  # up 177%
    contributions = pd.DataFrame({"rhythm_90d": [0.2], "recency_ratio": [0.1]}, index=["a"])
    assert top_reasons(risen, contributions, target="growth")["a"] == (
        "orders in the last 90 days at 0.5x its usual rhythm; "
        "no order for 120 days, 3.0x its usual gap")
    fallen = risen.assign(trailing_value=50.0, rhythm_90d=2.0)  # down 50%, brisk orders
    assert top_reasons(fallen, contributions, target="decline")["a"] == (
        "orders in the last 90 days at 2.0x its usual rhythm; "
        "no order for 120 days, 3.0x its usual gap")


def test_a_profit_share_just_under_the_rule_is_not_rounded_up_to_it():
    from keyltv.scoring.reasons import _percent_below

    assert _percent_below(0.0496, 0.05) == "4.96%"
    assert _percent_below(0.03, 0.05) == "3%"
    assert _percent_below(0.0496, None) == "5%"


def test_a_fact_at_its_usual_level_points_nowhere():
    on_rhythm = pd.DataFrame([ROW], index=["a"]).assign(recency_ratio=1.02, trailing_value=100.04)
    contributions = pd.DataFrame({"trend": [1.0], "recency_ratio": [0.5]}, index=["a"])
    assert top_reasons(on_rhythm, contributions, target="growth")["a"] == (
        "value up 0% on the horizon before; no order for 120 days, 1.0x its usual gap")


def test_a_predicted_loss_is_called_a_loss():
    from keyltv.scoring.reasons import explain_flags

    class Stub:
        def explain(self, features, target):
            return None

    scored = pd.DataFrame({"at_risk": [False], "high_potential": [False], "key_account": [False],
                           "low_margin_key": [True], "predicted_value": [200.0],
                           "predicted_profit": [-78.0]}, index=["a"])
    got = explain_flags(Stub(), pd.DataFrame([ROW], index=["a"]), scored, low_margin_rate=0.05)
    assert got["a"] == "predicted loss of 39% of its predicted value"
