"""Which account attributes the models read, and as what.

:func:`keyltv.data.accounts.load_accounts` types each column (numbers, dates,
categories). Two kinds of column need a decision beyond their type:

- an **id-like** column (a VAT number, a CRM key, an e-mail, a name: one value per
  account) is no model input: as a category of thousands of levels a tree can learn
  each training account by heart, and every account scored later is a level it never
  saw (:func:`id_like_attributes`);
- a **date** (``customer_since``, ``contract_end``) becomes the days from it to each
  row's cutoff (:func:`days_before`), a number whose meaning (the account's age, the
  days to its contract's end) stays the same from one cutoff to the next.

Training decides (:func:`model_attributes`); the model keeps what it decided (its
``feature_columns`` and ``ignored_attributes``), and scoring reads the account table
as the model was trained on it (:func:`as_trained`), never deciding again on a table
of other accounts.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import date

import pandas as pd

from keyltv.data.accounts import MISSING_TOKENS, is_dates, parse_dates
from keyltv.data.schema import InputError, describe_value

# Prefix of the account attribute columns in a feature frame.
ATTRIBUTE_PREFIX = "attr_"
# Suffix of the feature that a date attribute becomes: ``attr_customer_since_days_before``.
DAYS_BEFORE = "_days_before"

# A column of categories whose distinct values reach this share of its non-blank rows is
# read as an id, not a category: a real category repeats (a region, an industry, a
# size band), while a key, an e-mail or a name is unique on nearly every row. 95%
# leaves room for a few duplicates (two branches with one name, an e-mail typed twice).
ID_LIKE_SHARE = 0.95
# ... provided it has more than this many distinct values. In a table of a few dozen
# accounts a real category is unique per account by chance (twelve accounts in twelve
# cities), and a tree can do little with so few levels; above it, a category that
# repeats on fewer than one row in twenty is an id in all but name.
ID_LIKE_MIN_LEVELS = 20


def date_feature(column: str) -> str:
    """The name of the model input that date attribute ``column`` becomes."""
    return f"{ATTRIBUTE_PREFIX}{column}{DAYS_BEFORE}"


def id_like_attributes(accounts: pd.DataFrame | None, keep: Collection[str] = ()
                       ) -> dict[str, str]:
    """The id-like columns of an account table, each with why (see :data:`ID_LIKE_SHARE`).

    Only categories are judged: a numeric id is rare and harmless to trees (a split on
    it is a split on a number), and dates become days.

    Parameters
    ----------
    accounts : pandas.DataFrame or None
        As :func:`keyltv.data.accounts.load_accounts` returns it.
    keep : collection of str
        Columns never judged: the config's ``account_text_columns``, which the user
        named as categories.

    Returns
    -------
    dict
        Column -> ``"4,812 distinct values in 4,812 non-blank rows"``, in table order.
    """
    if accounts is None:
        return {}
    found = {}
    for column in accounts.columns:
        values = accounts[column]
        if column in keep or not isinstance(values.dtype, pd.CategoricalDtype):
            continue
        given, distinct = int(values.notna().sum()), int(values.nunique())
        if distinct > ID_LIKE_MIN_LEVELS and distinct >= ID_LIKE_SHARE * given:
            found[column] = f"{distinct:,} distinct values in {given:,} non-blank rows"
    return found


def model_attributes(accounts: pd.DataFrame | None, keep: Collection[str] = ()
                     ) -> pd.DataFrame | None:
    """The account table without its id-like columns: what training learns from."""
    ignored = id_like_attributes(accounts, keep)
    return accounts.drop(columns=list(ignored)) if ignored else accounts


def ignored_attribute_message(source: str, column: str, why: str) -> str:
    """The one line that says an id-like column is no model input, and how to make it one."""
    return (f"{source}: column {column!r}: {why}, an id rather than a category: not used as a "
            "model input (name it in account_text_columns to use it as categories)")


def days_before(dates: pd.Series, cutoff: pd.Series | date) -> pd.Series:
    """Days from each date to its row's cutoff: positive before it, negative after.

    A date after the cutoff is kept as a negative number rather than read as missing.
    A contract end, a renewal or a planned visit lies after the cutoff by nature, and
    how far is what the model should see. The table is one snapshot, so at an earlier
    training cutoff every attribute is today's value, not the one known then: a
    ``customer_since`` after a training cutoff (an account that ordered before it
    signed) tells the rows of that cutoff something that happened later. No rule on
    the table can tell that date from a planned one, so both are kept, and the README
    says which columns to leave out: a date that moves with the account's activity
    (``last_visit``, ``last_order``) tells an earlier cutoff whether the account was
    still active after it. At scoring, where the table and the cutoff are of the same
    day, such a date is not after the cutoff and no future is read.

    Parameters
    ----------
    dates : pandas.Series
        ``datetime64`` days (NaT where missing).
    cutoff : pandas.Series or datetime.date
        The cutoff of each row (a stacked training frame's ``cutoff``), or one for all.

    Returns
    -------
    pandas.Series
        Floats on ``dates``' index, NaN where the date is missing.
    """
    cut = cutoff if isinstance(cutoff, pd.Series) else pd.Timestamp(cutoff)
    return ((cut - dates) / pd.Timedelta(days=1)).astype(float)


def with_days_before(joined: pd.DataFrame, as_of: date | None,
                     source: str = "account table") -> pd.DataFrame:
    """Replace each date attribute of a joined feature frame by its days before the cutoff.

    The cutoff is each row's ``cutoff`` (stacked training rows of several cutoffs) or
    else ``as_of``. The feature keeps the date's place among the columns.

    Raises
    ------
    ValueError
        A date attribute without a cutoff to count from (no ``cutoff`` column, no ``as_of``).
    InputError
        A date column whose feature name another column of the table already has.
    """
    for name in [c for c in joined.columns if c.startswith(ATTRIBUTE_PREFIX)]:
        if not is_dates(joined[name]):
            continue
        column = name[len(ATTRIBUTE_PREFIX):]
        if date_feature(column) in joined.columns:
            raise InputError(f"{source}: column {column!r} holds dates, which become "
                             f"{date_feature(column)!r}, the name of another column; "
                             "rename one of them")
        if "cutoff" in joined.columns:
            cutoff = joined["cutoff"]
        elif as_of is not None:
            cutoff = as_of
        else:
            raise ValueError(f"date attribute {column!r} needs as_of (or a cutoff column) "
                             "to count its days from")
        at = joined.columns.get_loc(name)
        joined.insert(at, date_feature(column), days_before(joined.pop(name), cutoff))
    return joined


def as_trained(accounts: pd.DataFrame | None, feature_columns: Collection[str],
               ignored: Mapping[str, str] | Collection[str] = (),
               date_format: str | None = None) -> pd.DataFrame | None:
    """The account table read as the model was trained on it, for scoring.

    Columns training ignored as ids are left out. A column the model reads as dates
    (``attr_<column>_days_before`` in ``feature_columns``) is read as dates even where
    this table alone would not be (a few accounts, more placeholders); a column it read
    as categories goes back to its ISO text where this table reads as dates (a model
    trained before dates were read, or on a column with more words then).

    Raises
    ------
    InputError
        A value that is no date (nor a missing-value marker) in a column the model
        reads as dates, naming the file, the column and the value.
    """
    if accounts is None:
        return None
    source = accounts.attrs.get("source", "account table")
    table = accounts.drop(columns=[c for c in ignored if c in accounts.columns])
    for column in table.columns:
        values = table[column]
        if date_feature(column) in feature_columns and not is_dates(values):
            table[column] = _trained_dates(values, f"{source}: column {column!r}", date_format)
        elif f"{ATTRIBUTE_PREFIX}{column}" in feature_columns and is_dates(values):
            table[column] = values.dt.strftime("%Y-%m-%d").astype("category")
    return table


def _trained_dates(values: pd.Series, where: str, date_format: str | None) -> pd.Series:
    """A column the model reads as dates, as days; refuse a value that is no date."""
    text = values.astype("string").str.strip().replace("", pd.NA)
    dates = parse_dates(text, date_format)
    bad = text[text.notna() & dates.isna() & ~text.str.lower().isin(MISSING_TOKENS)]
    if len(bad):
        formats = "YYYY-MM-DD" + (f" or {date_format!r}" if date_format else "")
        raise InputError(f"{where}: value {describe_value(bad.iloc[0])} is not a date "
                         f"({formats}); the model was trained with dates in this column")
    return dates
