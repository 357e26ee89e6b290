"""Tests of the B2B transaction-log simulator: contract, determinism and story."""

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from keyltv.data.simulate import VARIANTS, expected_value, simulate_b2b

N = 2000
SEEDS = [0, 1]
START = pd.Timestamp("2021-01-01")


@pytest.fixture(scope="module", params=SEEDS, ids=[f"seed{s}" for s in SEEDS])
def seed(request):
    return request.param


@pytest.fixture(scope="module")
def base(seed):
    return simulate_b2b(N, seed=seed)


def _value_by_account(transactions, accounts):
    total = transactions.groupby("customer_id")["amount"].sum()
    return total.reindex(accounts["customer_id"], fill_value=0.0)


def _share_growing(transactions, accounts):
    """Share of accounts whose last 365 days beat the 365 days before."""
    last_day = transactions["date"].max()
    year = pd.Timedelta(days=365)
    ago = last_day - transactions["date"]
    last = transactions[ago < year].groupby("customer_id")["amount"].sum()
    prev = transactions[(ago >= year) & (ago < 2 * year)].groupby("customer_id")["amount"].sum()
    ids = accounts["customer_id"]
    return (last.reindex(ids, fill_value=0) > prev.reindex(ids, fill_value=0)).mean()


def _share_silent(transactions, accounts, days=182):
    """Share of accounts with no line in the last ``days`` days."""
    recent = transactions["date"] > transactions["date"].max() - pd.Timedelta(days=days)
    return 1 - transactions.loc[recent, "customer_id"].nunique() / len(accounts)


def test_transactions_schema(base):
    transactions, accounts = base
    assert list(transactions.columns) == ["customer_id", "date", "amount", "margin"]
    assert pd.api.types.is_string_dtype(transactions["customer_id"])
    assert transactions["date"].dtype == np.dtype("datetime64[ns]")
    assert (transactions["date"] == transactions["date"].dt.normalize()).all()
    assert transactions["amount"].dtype == np.float64
    assert transactions["margin"].dtype == np.float64
    assert not transactions.isna().any().any()
    assert transactions["customer_id"].str.fullmatch(r"A\d{5}").all()
    assert transactions["customer_id"].isin(accounts["customer_id"]).all()


def test_transactions_sorted_by_date_then_customer(base):
    transactions, _ = base
    keys = transactions[["date", "customer_id"]]
    expected = keys.sort_values(["date", "customer_id"], kind="stable", ignore_index=True)
    assert_frame_equal(keys, expected)


def test_several_lines_per_account_and_day(base):
    transactions, _ = base
    assert transactions.groupby(["customer_id", "date"]).size().max() > 1


def test_accounts_schema(base):
    _, accounts = base
    assert list(accounts.columns) == ["customer_id", "industry", "size", "region", "employees"]
    assert len(accounts) == N
    assert accounts["customer_id"].is_unique
    assert accounts["customer_id"].iloc[[0, -1]].tolist() == ["A00001", "A02000"]
    for column in ["customer_id", "industry", "size", "region"]:
        assert pd.api.types.is_string_dtype(accounts[column]), column
    assert pd.api.types.is_integer_dtype(accounts["employees"])
    assert set(accounts["size"]) == {"small", "medium", "large", "enterprise"}
    assert accounts["industry"].nunique() == 6
    assert accounts["region"].nunique() == 4
    assert not accounts.isna().any().any()


def test_employees_grow_with_size(base):
    _, accounts = base
    order = ["small", "medium", "large", "enterprise"]
    medians = accounts.groupby("size")["employees"].median().loc[order]
    assert medians.is_monotonic_increasing
    assert (accounts["employees"] >= 10).all()


def test_size_is_informative_but_not_deterministic(base):
    transactions, accounts = base
    value = _value_by_account(transactions, accounts).to_numpy()
    by_size = pd.Series(value).groupby(accounts["size"].to_numpy()).median()
    assert by_size.loc[["small", "medium", "large", "enterprise"]].is_monotonic_increasing
    # Noise lets some small accounts out-buy the median large account.
    small = value[accounts["size"].to_numpy() == "small"]
    assert (small > by_size["large"]).sum() >= 5


def test_same_seed_gives_identical_frames():
    first = simulate_b2b(300, seed=11)
    second = simulate_b2b(300, seed=11)
    assert_frame_equal(first[0], second[0])
    assert_frame_equal(first[1], second[1])


def test_other_seed_gives_other_frames():
    first, _ = simulate_b2b(300, seed=11)
    other, _ = simulate_b2b(300, seed=12)
    assert not first.equals(other)


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANTS)
def test_each_variant_runs(variant):
    transactions, accounts = simulate_b2b(300, variant=variant, seed=3)
    assert len(transactions) > 1000
    assert len(accounts) == 300
    assert transactions["customer_id"].isin(accounts["customer_id"]).all()
    assert transactions["date"].min() >= START


def test_no_attributes_keeps_only_customer_id_and_the_base_log():
    transactions, accounts = simulate_b2b(300, variant="no_attributes", seed=3)
    base_transactions, base_accounts = simulate_b2b(300, seed=3)
    assert list(accounts.columns) == ["customer_id"]
    assert_frame_equal(accounts, base_accounts[["customer_id"]])
    assert_frame_equal(transactions, base_transactions)


@pytest.mark.parametrize(
    ("variant", "months"),
    [("base", 48), ("short_history", 15)],
    ids=["base-4y", "short_history-15m"],
)
def test_default_end_per_variant(variant, months):
    transactions, _ = simulate_b2b(500, variant=variant, seed=5)
    end = START + pd.DateOffset(months=months)
    assert transactions["date"].min() == START
    assert end - pd.Timedelta(days=7) <= transactions["date"].max() < end


def test_explicit_end_overrides_default():
    transactions, _ = simulate_b2b(
        300, variant="short_history", start="2022-03-15", end="2022-06-01", seed=4
    )
    assert transactions["date"].min() >= pd.Timestamp("2022-03-15")
    assert transactions["date"].max() < pd.Timestamp("2022-06-01")


def test_accounts_are_acquired_over_time(base):
    transactions, accounts = base
    first_order = transactions.groupby("customer_id")["date"].min()
    present_early = (first_order < START + pd.Timedelta(days=60)).mean()
    assert 0.4 < present_early < 0.8
    assert (first_order > START + pd.DateOffset(years=3)).sum() > 0.05 * len(accounts)


def test_growth_heavy_has_more_growing_accounts(base, seed):
    growth = simulate_b2b(N, variant="growth_heavy", seed=seed)
    assert _share_growing(*growth) > _share_growing(*base) + 0.03


def test_churn_heavy_has_more_silent_accounts(base, seed):
    churn = simulate_b2b(N, variant="churn_heavy", seed=seed)
    assert _share_silent(*churn) > _share_silent(*base) + 0.15


def test_value_is_concentrated_in_top_fifth(base):
    value = _value_by_account(*base).sort_values(ascending=False)
    top_share = value.iloc[: len(value) // 5].sum() / value.sum()
    assert 0.55 <= top_share <= 0.90


def test_returns_exist_but_net_value_is_positive(base):
    transactions, _ = base
    returns = transactions["amount"] < 0
    assert 0.005 < returns.mean() < 0.10
    # Single lines of thin-margin accounts can lose money, so only the total is signed.
    assert transactions.loc[returns, "margin"].sum() < 0
    assert transactions["amount"].sum() > 0
    assert (transactions["amount"] != 0).all()


def test_some_high_volume_accounts_have_thin_margins(base):
    transactions, _ = base
    totals = transactions.groupby("customer_id")[["amount", "margin"]].sum()
    margin_rate = totals["margin"] / totals["amount"]
    big = totals["amount"] > totals["amount"].median()
    assert ((margin_rate < 0.05) & big).sum() >= 5
    assert 0.05 < margin_rate.median() < 0.45


@pytest.mark.parametrize(
    ("industry", "high", "low"),
    [("retail", [11, 12], [5, 6]), ("construction", [4, 5], [11, 12])],
    ids=["retail-peaks-q4", "construction-peaks-spring"],
)
def test_industry_seasonality(base, industry, high, low):
    transactions, accounts = base
    ids = accounts.loc[accounts["industry"] == industry, "customer_id"]
    lines = transactions[transactions["customer_id"].isin(ids)]
    by_month = lines.groupby(lines["date"].dt.month)["amount"].sum()
    assert by_month.loc[high].sum() > 1.2 * by_month.loc[low].sum()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_accounts": 0}, r"n_accounts=0"),
        ({"n_accounts": 2.5}, r"n_accounts=2\.5"),
        ({"variant": "bogus"}, r"variant='bogus'.*base.*churn_heavy"),
        ({"end": "2020-06-01"}, r"end='2020-06-01'"),
        ({"end": "2021-01-01"}, r"end='2021-01-01'"),
        ({"start": "not a date"}, r"start='not a date'"),
    ],
    ids=[
        "zero-accounts",
        "float-accounts",
        "unknown-variant",
        "end-before-start",
        "end-equals-start",
        "bad-start",
    ],
)
def test_invalid_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate_b2b(**kwargs)


def test_expected_value_is_the_level_and_the_order_of_what_happens():
    """The oracle of the accuracy benchmark: unbiased, and it ranks better than the past."""
    from datetime import date

    from keyltv.data.transactions import load_transactions
    from keyltv.evaluation.metrics import normalized_gini
    from keyltv.features import account_features, future_values

    tx, _ = simulate_b2b(1500, seed=3)
    log = load_transactions(tx)
    features = account_features(log, date(2024, 1, 1), 365)
    actual = future_values(log, date(2024, 1, 1), 365, features.index)["value"]
    oracle = expected_value(1500, seed=3, as_of="2024-01-01", horizon_days=365)
    assert oracle.index.is_unique and len(oracle) == 1500
    assert oracle.reindex(features.index).sum() == pytest.approx(actual.sum(), rel=0.05)
    assert normalized_gini(actual, oracle.reindex(features.index)) > \
        normalized_gini(actual, features["trailing_value"]) + 0.02
