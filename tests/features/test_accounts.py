from datetime import date

import numpy as np
import pandas as pd
import pytest

from keyltv.data.schema import InputError
from keyltv.data.transactions import load_transactions
from keyltv.features import (
    FEATURE_COLUMNS,
    account_features,
    future_values,
    training_cutoffs,
    training_frame,
    with_attributes,
)
from keyltv.features.accounts import margin_day_moments, seasonal_contrast
from tests.conftest import frame, random_frame

AS_OF = date(2024, 3, 1)  # 2024 is a leap year: 2024-01-01 is 60 days before


def test_features_on_a_hand_typed_log(tiny_log):
    got = account_features(tiny_log, AS_OF, horizon_days=30)
    expected = pd.DataFrame(
        {
            "frequency": [2.0, 0.0],
            "recency": [40.0, 0.0],
            "T": [60.0, 56.0],
            "repeat_order_value": [40.0, 0.0],
            "orders_total": [3.0, 1.0],
            "value_total": [160.0, 0.0],
            "days_since_last_order": [20.0, 56.0],
            "days_since_last_activity": [20.0, 41.0],
            "value_30d": [30.0, 0.0],
            "orders_30d": [1.0, 0.0],
            "trailing_value": [30.0, 0.0],
            "previous_value": [130.0, 0.0],
            "mean_gap_days": [20.0, np.nan],
            "gap_cv": [0.5, np.nan],
            "return_share": [20.0 / 180.0, 1.0],
            "recency_ratio": [1.0, np.nan],
            # 00042's net value 80, 50, 30 sits 60, 50, 20 days back: mean age 49.375
            # of a 60-day history (ratio to its middle 30); account 7 nets to zero.
            "value_centroid_ratio": [49.375 / 30.0, np.nan],
            "order_centroid_ratio": [(60 + 50 + 20) / 3 / 30.0, 56.0 / 28.0],
            "ewm_value_90d": [80 * np.exp(-60 / 90) + 50 * np.exp(-50 / 90) + 30 * np.exp(-20 / 90),
                              40 * np.exp(-56 / 90) - 40 * np.exp(-41 / 90)],
            "ewm_orders_180d": [np.exp(-60 / 180) + np.exp(-50 / 180) + np.exp(-20 / 180),
                                np.exp(-56 / 180)],
        },
        index=pd.Index(["00042", "7"], name="customer_id"),
    )
    pd.testing.assert_frame_equal(got[expected.columns], expected)
    assert list(got.columns) == FEATURE_COLUMNS



def test_a_log_of_many_years_has_its_active_months_counted_in_the_last_year():
    # A line 63+ months before the cutoff once overflowed the month bit (2^63 > BIGINT).
    log = load_transactions(frame([("a", "2010-01-15", 10.0), ("a", "2023-01-05", 5.0),
                                   ("a", "2023-02-07", 5.0), ("b", "2016-06-01", 7.0)]))
    got = account_features(log, date(2023, 4, 1), horizon_days=90)
    assert got.loc["a", "active_months_365"] == 2.0
    assert got.loc["b", "active_months_365"] == 0.0
    assert got.loc["a", "orders_total"] == 3.0

def test_rhythms_compare_recent_orders_with_the_account_s_own_long_run_rate():
    as_of = date(2024, 1, 1)

    def line(account: str, days_back: int) -> tuple:
        return account, str(as_of - pd.Timedelta(days=days_back)), 10.0

    # a: six orders over two years, two of them in the last year, one in the last 90
    # days. b: two orders in its first 100 days, so its year holds its whole history.
    log = load_transactions(frame([line("a", back) for back in (730, 600, 500, 400, 200, 30)]
                                  + [line("b", 100), line("b", 10)]))
    got = account_features(log, as_of, horizon_days=90)
    # Expected orders in a window: orders_total x window / max(tenure, window).
    assert got.loc["a", "rhythm_365d"] == pytest.approx(2 / (6 * 365 / 730))
    assert got.loc["a", "rhythm_90d"] == pytest.approx(1 / (6 * 90 / 730))
    assert got.loc["b", "rhythm_365d"] == pytest.approx(1.0)
    assert got.loc["b", "rhythm_90d"] == pytest.approx(1 / (2 * 90 / 100))


def test_account_without_orders_before_the_cutoff_gets_order_features_of_none():
    # "r" has only a credit note and a zero line before the cutoff (its order comes
    # after): its order aggregates are those of no order, not of its two days.
    rows = [("r", "2024-02-01", -15.0), ("r", "2024-02-11", 0.0), ("r", "2024-03-02", 9.0),
            ("b", "2024-01-01", 10.0), ("b", "2024-01-31", 20.0)]
    got = account_features(load_transactions(frame(rows)), AS_OF, horizon_days=30).loc["r"]
    expected = {"frequency": 0.0, "recency": 0.0, "T": 29.0, "tenure_days": 29.0,
                "orders_total": 0.0, "repeat_order_value": 0.0, "avg_order_value": 0.0,
                "days_since_last_order": 29.0, "days_since_last_activity": 19.0,
                "value_total": -15.0, "ewm_orders_180d": 0.0, "orders_365d": 0.0}
    assert got[list(expected)].to_dict() == expected
    assert got[["mean_gap_days", "gap_cv", "recency_ratio", "order_centroid_ratio", "rhythm_90d",
                "rhythm_365d"]].isna().all()


def test_nothing_on_or_after_as_of_is_read(tiny_log, tiny_rows):
    later = tiny_rows + [("00042", "2024-03-01", 1e6), ("new", "2024-02-29", 5.0)]
    got = account_features(load_transactions(frame(later)), AS_OF, 30)
    base = account_features(tiny_log, AS_OF, 30)
    pd.testing.assert_frame_equal(got.loc[base.index], base)
    assert "new" in got.index


def test_future_values_window_is_half_open(tiny_log):
    index = pd.Index(["00042", "7", "zzz"])
    got = future_values(tiny_log, date(2024, 1, 11), 30, index)
    # 2024-01-11 and 2024-02-10 are 30 days apart: the second is outside [as_of, +30).
    assert got["value"].tolist() == [50.0, -40.0, 0.0]
    assert got["orders"].tolist() == [1.0, 0.0, 0.0]


def test_future_values_refuse_ids_that_are_not_text(tiny_log):
    # 7 read back from a file as a number matches no account: every label would be 0.
    with pytest.raises(InputError, match=r"future_values: index holds integer values such as "
                                         r"7, not the log's account ids \(text such as '00042'\)"):
        future_values(tiny_log, date(2024, 1, 11), 30, pd.Index([7, 42]))
    assert future_values(tiny_log, date(2024, 1, 11), 30, pd.Index([], dtype=object)).empty


def test_training_frame_stacks_cutoffs(tiny_log):
    cutoffs = training_cutoffs(tiny_log, date(2024, 3, 6), 20, n_cutoffs=3, step_days=10,
                               min_feature_days=5)
    assert cutoffs == [date(2024, 2, 15), date(2024, 2, 5), date(2024, 1, 26)]
    X, y = training_frame(tiny_log, cutoffs, 20)
    assert len(X) == len(y) == 6
    assert X["cutoff"].nunique() == 3
    with pytest.raises(ValueError, match="too short"):
        training_cutoffs(tiny_log, date(2024, 1, 10), 20, 2, 10, 30)


def test_attributes_are_prefixed_and_left_joined(tiny_log):
    features = account_features(tiny_log, AS_OF, 30)
    accounts = pd.DataFrame({"size": pd.Categorical(["big", "small"])},
                            index=pd.Index(["7", "other"], name="customer_id"))
    joined = with_attributes(features, accounts)
    assert joined.index.equals(features.index)
    assert joined["attr_size"].tolist()[1] == "big"
    assert pd.isna(joined["attr_size"].tolist()[0])
    assert isinstance(joined["attr_size"].dtype, pd.CategoricalDtype)


def test_sampled_training_frame_caps_each_cutoff_with_a_seed():
    from keyltv.data.simulate import simulate_b2b
    from keyltv.data.transactions import load_transactions
    from keyltv.features import sampled_training_frame

    tx, _ = simulate_b2b(120, seed=4)
    log = load_transactions(tx)
    cutoffs = [date(2024, 1, 1), date(2023, 10, 1)]
    full_X, full_y = training_frame(log, cutoffs, 90)
    X, y, left_out = sampled_training_frame(log, cutoffs, 90, max_rows=50, seed=1)
    assert (X.groupby("cutoff").size() == 25).all()
    assert left_out == len(full_X) - 50
    # A subset of the full rows, labels aligned, and the same sample for the same seed.
    keys = ["cutoff"]
    merged = X.reset_index().merge(full_X.reset_index(), on=["customer_id", *keys],
                                   suffixes=("", "_full"))
    assert len(merged) == 50
    np.testing.assert_allclose(merged["value_total"], merged["value_total_full"])
    assert y.index.equals(X.index)
    again, _, _ = sampled_training_frame(log, cutoffs, 90, max_rows=50, seed=1)
    pd.testing.assert_frame_equal(X, again)
    # No cap: the full frame.
    same, _, none_out = sampled_training_frame(log, cutoffs, 90)
    pd.testing.assert_frame_equal(same, full_X)
    assert none_out == 0


def test_features_are_identical_on_every_run():
    # Enough account-days for several DuckDB row groups (122,880 rows each), read by
    # four threads: floating-point sums of per-thread parts differed in the last bits
    # from run to run before every sum was made exact.
    log = load_transactions(random_frame(400_000, 5_000, seed=3))
    log.con.execute("SET threads = 4")
    first = account_features(log, date(2024, 12, 1), horizon_days=365)
    second = account_features(log, date(2024, 12, 1), horizon_days=365)
    pd.testing.assert_frame_equal(first, second, check_exact=True)


def test_as_of_may_be_text_or_a_timestamp_whose_time_is_dropped(tiny_log):
    base = account_features(tiny_log, AS_OF, 30)
    for as_of in ("2024-03-01", pd.Timestamp("2024-03-01 15:30"), np.datetime64("2024-03-01")):
        pd.testing.assert_frame_equal(account_features(tiny_log, as_of, 30), base)
    with pytest.raises(ValueError, match="as_of 2024-03-01 00:00:00-05:00: time-zone-aware"):
        account_features(tiny_log, pd.Timestamp("2024-03-01", tz="America/New_York"), 30)
    with pytest.raises(ValueError, match="horizon_days '30': expected a whole number"):
        account_features(tiny_log, AS_OF, "30")
    with pytest.raises(ValueError, match="horizon_days 0: expected a whole number"):
        future_values(tiny_log, AS_OF, 0, base.index)


def test_attributes_with_an_id_column_or_matching_nothing(tiny_log):
    features = account_features(tiny_log, AS_OF, 30)
    as_column = pd.DataFrame({"customer_id": ["7", "other"], "size": ["big", "small"]})
    joined = with_attributes(features, as_column)
    assert joined.index.tolist() == ["00042", "7"]
    assert joined["attr_size"].isna().tolist() == [True, False]
    assert joined.loc["7", "attr_size"] == "big"
    assert "attr_customer_id" not in joined
    # Indexed by row numbers: every attribute would be missing without a word.
    with pytest.raises(ValueError, match="its index holds integer values such as 0, not"):
        with_attributes(features, as_column.drop(columns="customer_id"))
    # Text ids that match no account yet (a new account's row at an early cutoff) are fine.
    later = with_attributes(features, as_column.assign(customer_id=["new1", "new2"]))
    assert later["attr_size"].isna().all()


def test_margin_day_moments_weigh_each_order_day_by_its_value():
    cols = ("customer_id", "date", "amount", "margin")
    log = load_transactions(frame([
        ("a", "2024-01-02", 100.0, 10.0), ("a", "2024-01-02", 100.0, 30.0),  # one day: 20%
        ("a", "2024-01-09", 50.0, 25.0),                                      # 50%
        ("a", "2024-01-10", -20.0, -2.0),                                     # a return: no order
        ("b", "2024-01-05", 10.0, 40.0),   # margin above amount: rate clipped to 1
        ("b", "2024-03-05", 10.0, 1.0),    # on the cutoff: left out
    ], columns=cols))
    got = margin_day_moments(log, AS_OF)
    expected = pd.DataFrame({"days": [2.0, 1.0], "weight": [250.0, 10.0],
                             "margin": [40.0 + 25.0, 10.0],
                             "margin_sq": [200 * 0.2**2 + 50 * 0.5**2, 10.0]},
                            index=pd.Index(["a", "b"], name="customer_id"))
    pd.testing.assert_frame_equal(got, expected)


def test_margin_day_moments_are_empty_without_margins(tiny_log):
    assert margin_day_moments(tiny_log, AS_OF).empty


def test_seasonal_contrast_sums_the_two_windows_a_year_before_as_of_for_known_accounts():
    log = load_transactions(frame([
        ("a", "2023-01-01", 99.0),   # before both windows
        ("a", "2023-01-02", 10.0),   # first day of the window before (as_of - 365 - 60)
        ("b", "2023-03-02", 5.0),    # last day of it
        ("a", "2023-03-03", 40.0),   # as_of - 365: first day of the window after
        ("b", "2023-05-01", 2.0),    # last day of it
        ("c", "2023-04-01", 500.0),  # first seen inside the window after: left out
        ("a", "2023-05-02", 1000.0),  # after both
        ("a", "2024-02-01", 7.0),
    ]), label="two years")
    assert seasonal_contrast(log, date(2024, 3, 2), 60) == (42.0, 15.0)


@pytest.mark.parametrize(("as_of", "horizon"), [(date(2024, 3, 2), 365), (date(2024, 3, 1), 60)])
def test_seasonal_contrast_needs_a_short_horizon_and_the_whole_year_before(as_of, horizon):
    log = load_transactions(frame([("a", "2023-01-02", 10.0), ("a", "2024-02-01", 7.0)]))
    assert seasonal_contrast(log, as_of, horizon) is None


def test_docs_features_names_every_feature_column_and_no_other():
    # The column list was in the source alone (audit 28); the page says what each one is.
    import re
    from pathlib import Path

    from keyltv.features.definitions import FEATURE_COLUMNS

    page = (Path(__file__).parents[2] / "docs" / "features.md").read_text(encoding="utf-8")
    documented = re.findall(r"^\| `([a-zA-Z0-9_]+)` \|", page, flags=re.MULTILINE)
    assert documented == FEATURE_COLUMNS


def test_api_misuse_says_what_to_pass():
    # A raw frame failed on '.con', and one date string was read character by character
    # as "as_of '2'" (audit 28).
    tx = frame([("a", "2024-01-01", 5.0), ("a", "2024-02-01", 3.0)])
    with pytest.raises(TypeError, match="expected a TransactionLog, got DataFrame; load the "
                                        "transactions first"):
        account_features(tx, date(2024, 3, 1), 30)
    log = load_transactions(tx)
    for one in ("2024-03-01", date(2024, 3, 1)):
        with pytest.raises(TypeError, match="cutoffs must be a list of dates"):
            training_frame(log, one, 30)
