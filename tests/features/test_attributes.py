from datetime import date

import pandas as pd
import pytest

from keyltv.config import Config
from keyltv.data.accounts import load_accounts
from keyltv.data.schema import InputError
from keyltv.data.transactions import load_transactions
from keyltv.features import account_features, training_frame, with_attributes
from keyltv.features.attributes import (
    ID_LIKE_MIN_LEVELS,
    as_trained,
    days_before,
    id_like_attributes,
    model_attributes,
)
from keyltv.models.training import training_data
from tests.conftest import random_frame

AS_OF = date(2024, 3, 1)


def book(n: int = 25) -> pd.DataFrame:
    """``n`` accounts: a VAT number each, three regions, names with one duplicate."""
    ids = [f"{i:03d}" for i in range(n)]
    return load_accounts(pd.DataFrame({
        "customer_id": ids,
        "vat": [f"DE{i:09d}" for i in range(n)],
        "region": (["north", "south", "east"] * n)[:n],
        "name": [f"Firm {i}" for i in range(n - 1)] + ["Firm 0"],
        "email": [f"buyer@{i}.example" for i in range(n)],
        "crm_no": list(range(1000, 1000 + n)),  # a numeric id: left to the trees
    }))


def test_columns_of_one_value_per_account_are_id_like():
    accounts = book()
    assert id_like_attributes(accounts) == {
        "vat": "25 distinct values in 25 non-blank rows",
        "name": "24 distinct values in 25 non-blank rows",  # 96%: two branches, one name
        "email": "25 distinct values in 25 non-blank rows",
    }
    # A column the config names as text is the user's category, not judged.
    assert "email" not in id_like_attributes(accounts, keep=["email"])
    assert model_attributes(accounts, keep=["email"]).columns.tolist() == [
        "region", "email", "crm_no"]
    assert id_like_attributes(None) == {} and model_attributes(None) is None


def test_a_small_table_keeps_its_unique_categories():
    # Twenty accounts in twenty cities: a small book's category, unique by chance.
    small = book(ID_LIKE_MIN_LEVELS)
    assert id_like_attributes(small) == {}
    assert model_attributes(small) is small


def test_days_before_count_per_row_and_go_negative_after_the_cutoff():
    dates = pd.Series(pd.to_datetime(["2024-01-01", "2024-03-11", None]), index=list("abc"))
    assert days_before(dates, AS_OF).tolist()[:2] == [60.0, -10.0]
    assert days_before(dates, AS_OF).isna().tolist() == [False, False, True]
    cutoffs = pd.Series(pd.to_datetime(["2024-01-02", "2024-03-01", "2024-03-01"]),
                        index=list("abc"))
    assert days_before(dates, cutoffs).tolist()[:2] == [1.0, -10.0]


def test_a_date_attribute_joins_as_its_days_before_the_cutoff(tiny_log):
    accounts = load_accounts(pd.DataFrame({
        "customer_id": ["00042", "7"], "customer_since": ["2023-12-02", "2024-03-11"],
        "region": ["north", "south"]}))
    joined = with_attributes(account_features(tiny_log, AS_OF, 30), accounts, AS_OF)
    # In the table's place, as a number: 90 days before as_of; 10 days after it.
    assert joined.columns[-2:].tolist() == ["attr_customer_since_days_before", "attr_region"]
    assert joined["attr_customer_since_days_before"].to_dict() == {"00042": 90.0, "7": -10.0}
    # Stacked training rows count from their own cutoff.
    X, _ = training_frame(tiny_log, [date(2024, 2, 1), AS_OF], 30)
    stacked = with_attributes(X, accounts)
    got = stacked.set_index("cutoff", append=True)["attr_customer_since_days_before"]
    assert got.to_dict() == {("00042", pd.Timestamp("2024-02-01")): 61.0,
                             ("7", pd.Timestamp("2024-02-01")): -39.0,
                             ("00042", pd.Timestamp("2024-03-01")): 90.0,
                             ("7", pd.Timestamp("2024-03-01")): -10.0}
    with pytest.raises(ValueError, match="date attribute 'customer_since' needs as_of"):
        with_attributes(account_features(tiny_log, AS_OF, 30), accounts)


def test_a_date_column_whose_feature_name_is_taken_is_refused(tiny_log):
    accounts = load_accounts(pd.DataFrame({
        "customer_id": ["7"], "since": ["2023-12-02"], "since_days_before": [3]}), label="a.csv")
    with pytest.raises(InputError, match="a.csv: column 'since' holds dates, which become "
                                         "'attr_since_days_before', the name of another"):
        with_attributes(account_features(tiny_log, AS_OF, 30), accounts, AS_OF)


def test_training_rows_leave_out_ids_and_count_dates_per_cutoff():
    log = random_frame(600, 30, seed=3)
    ids = sorted(log["customer_id"].unique())
    accounts = load_accounts(pd.DataFrame({
        "customer_id": ids, "vat": [f"DE{i}" for i in range(len(ids))],
        "customer_since": ["2020-06-30"] * len(ids)}))
    config = Config(horizon_days=91, training={"n_cutoffs": 2, "cutoff_step_days": 91})
    data = training_data(load_transactions(log), date(2024, 6, 1), config, accounts)
    for X in (data.current, data.stacked_X):
        assert [c for c in X.columns if c.startswith("attr_")] == [
            "attr_customer_since_days_before"]
    days = data.stacked_X.groupby("cutoff")["attr_customer_since_days_before"].unique()
    assert {k.date(): v.tolist() for k, v in days.items()} == {
        date(2023, 12, 2): [1250.0], date(2024, 3, 2): [1341.0]}
    assert data.current["attr_customer_since_days_before"].unique().tolist() == [1432.0]
    # Named as text by the config, the column is the user's category and kept.
    named = training_data(load_transactions(log), date(2024, 6, 1),
                          config.with_overrides(account_text_columns=["vat"]), accounts)
    assert "attr_vat" in named.current.columns


def test_scoring_reads_the_table_as_the_model_was_trained_on_it():
    trained = ["recency", "attr_since_days_before", "attr_joined", "attr_region"]
    # Named as text in this run's config, the table alone reads 'since' as words.
    table = load_accounts(pd.DataFrame({
        "customer_id": ["1", "2", "3"], "since": ["2021-03-04", "n/a", ""],
        "joined": ["2021-03-04", "2022-01-31", None], "vat": ["DE1", "DE2", "DE3"],
        "region": ["north", "south", "north"]}), label="acc.csv", text_columns=["since"])
    assert isinstance(table["since"].dtype, pd.CategoricalDtype)
    assert str(table["joined"].dtype) == "datetime64[s]"
    got = as_trained(table, trained, {"vat": "3 distinct values in 3 non-blank rows"})
    assert got.columns.tolist() == ["since", "joined", "region"]
    assert got["since"].tolist()[0] == pd.Timestamp("2021-03-04")
    assert got["since"].isna().tolist() == [False, True, True]  # a marker, a blank
    # A column left blank this month is words to the table alone, dates to the model.
    blank = load_accounts(pd.DataFrame({"customer_id": ["1", "2"], "since": [None, ""]}))
    assert as_trained(blank, trained)["since"].isna().all()
    # 'joined' was learned as categories (an older model): its days as ISO text again.
    assert got["joined"].astype("string").tolist()[:2] == ["2021-03-04", "2022-01-31"]
    assert isinstance(got["joined"].dtype, pd.CategoricalDtype)
    assert as_trained(None, trained) is None
    words = load_accounts(pd.DataFrame({"customer_id": ["1", "2"], "since": ["2021-03-04", "tbd"]}),
                          label="acc.csv")
    with pytest.raises(InputError, match=r"acc.csv: column 'since': value 'tbd' is not a date "
                                         r"\(YYYY-MM-DD\); the model was trained with dates"):
        as_trained(words, trained)
