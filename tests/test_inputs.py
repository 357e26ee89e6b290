from __future__ import annotations

from datetime import date, timedelta

import pytest

from keyltv import workflows
from keyltv.config import Config
from keyltv.data.schema import InputError
from tests.conftest import frame

CONFIG = Config(horizon_days=182, models=("trailing", "bgnbd", "lightgbm"),
                training={"n_cutoffs": 2})


def test_accounts_first_seen_after_as_of_are_counted(tiny_rows):
    from datetime import date

    from tests.conftest import frame

    # Account 00003 buys only from 2024-03-05: in the log, not scored at 2024-03-01.
    inputs = workflows.load_inputs(frame(tiny_rows), None, CONFIG, date(2024, 3, 1), label="t")
    assert inputs.notes["accounts_first_seen_on_or_after_as_of"] == 1
    assert inputs.notes["lines_on_or_after_as_of"] == 1


def test_the_config_names_account_columns_read_as_text(tiny_rows):
    from datetime import date

    import pandas as pd

    from tests.conftest import frame

    accounts = pd.DataFrame({"customer_id": ["00042", "7"], "region": ["12", "7"]})
    config = CONFIG.with_overrides(account_text_columns=["region"])
    inputs = workflows.load_inputs(frame(tiny_rows), accounts, config, date(2024, 3, 1),
                                   label="t")
    assert isinstance(inputs.accounts["region"].dtype, pd.CategoricalDtype)


TYPO = "tx.csv: column 'date': value '2032-12-31' ({lines}) lies 3,288 days after every other " \
       "line (the latest before it is 2023-12-31) and would set the as-of date; fix the date " \
       "or pass --as-of"


@pytest.mark.parametrize(("typos", "lines"), [(1, "1 line"), (2, "2 lines")])
def test_a_lone_last_day_far_after_the_rest_is_refused_as_the_default_as_of(typos, lines):
    rows = [("a", "2023-12-01", 5.0), ("b", "2023-12-31", 5.0)]
    rows += [("a", "2032-12-31", 7.0)] * typos
    with pytest.raises(InputError) as refused:
        workflows.load_inputs(frame(rows), None, CONFIG, None, label="tx.csv")
    assert str(refused.value) == TYPO.format(lines=lines)


@pytest.mark.parametrize(("last", "as_of"), [
    ("2024-12-30", None),  # 365 days after the day before it: a long pause, not a typo
    ("2032-12-31", date(2024, 1, 1)),  # --as-of given: the typo is a line after it
])
def test_the_last_day_is_not_checked_within_a_year_or_with_an_as_of(last, as_of):
    rows = [("a", "2023-12-01", 5.0), ("b", "2023-12-31", 5.0), ("a", last, 7.0)]
    inputs = workflows.load_inputs(frame(rows), None, CONFIG, as_of, label="tx.csv")
    assert inputs.as_of == (as_of or date.fromisoformat(last) + timedelta(days=1))


@pytest.mark.parametrize("as_of", [None, date(2024, 6, 1)])
def test_a_lone_first_day_far_before_the_rest_is_refused(as_of):
    # 1921 for 2021 made its account a customer of a century (audit 28); unlike a far
    # last day, no --as-of sets it aside, and evaluate's loading checks it too.
    rows = [("a", "1921-01-04", 5.0), ("a", "2021-01-04", 5.0), ("b", "2021-06-30", 5.0)]
    with pytest.raises(InputError) as refused:
        workflows.load_inputs(frame(rows), None, CONFIG, as_of, label="tx.csv",
                              check_last_day=as_of is None)
    assert str(refused.value) == (
        "tx.csv: column 'date': value '1921-01-04' (1 line) lies 36,525 days before every "
        "other line (the earliest after it is 2021-01-04); fix the date or leave the line out")
    # A pause of a year after the first day is a pause, not a typo.
    rows[0] = ("a", "2020-01-05", 5.0)
    assert workflows.load_inputs(frame(rows), None, CONFIG, as_of, label="tx.csv").log.first_date \
        == date(2020, 1, 5)


def test_evaluate_loads_a_log_with_a_far_last_day_unchecked():
    # evaluate cuts at its own --cutoff; the log's last day sets nothing there.
    rows = [("a", "2023-11-01", 3.0), ("a", "2023-12-01", 5.0), ("a", "2032-12-31", 7.0)]
    inputs = workflows.load_inputs(frame(rows), None, CONFIG, None, label="tx.csv",
                                   check_last_day=False)
    assert inputs.as_of == date(2033, 1, 1)


def test_id_like_account_columns_are_said_once_and_counted(tiny_rows, caplog):
    import logging

    import pandas as pd

    ids = ["00042", "7", *(f"x{i}" for i in range(23))]
    accounts = pd.DataFrame({"customer_id": ids, "vat": [f"DE{i}" for i in range(25)],
                             "region": (["north", "south"] * 13)[:25]})
    inputs = workflows.load_inputs(frame(tiny_rows), accounts, CONFIG, date(2024, 3, 1),
                                   label="t")
    with caplog.at_level(logging.WARNING, logger="keyltv"):
        from keyltv.inputs import ignored_attributes

        assert ignored_attributes(inputs, CONFIG) == {
            "vat": "25 distinct values in 25 non-blank rows"}
    assert [r.getMessage() for r in caplog.records] == [
        "<DataFrame>: column 'vat': 25 distinct values in 25 non-blank rows, an id rather than "
        "a category: not used as a model input (name it in account_text_columns to use it as "
        "categories)"]
    assert inputs.notes["attribute_columns_ignored_as_ids"] == 1
    # Named as text, it is the user's category: kept, nothing said.
    named = CONFIG.with_overrides(account_text_columns=["vat"])
    inputs = workflows.load_inputs(frame(tiny_rows), accounts, named, date(2024, 3, 1), label="t")
    assert ignored_attributes(inputs, named) == {}
    assert "attribute_columns_ignored_as_ids" not in inputs.notes
