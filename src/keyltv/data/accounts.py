"""Load and validate an account attribute table, one row per account.

The table is read as the transaction log is (:mod:`keyltv.data.sources`), with its ids
read as in :mod:`keyltv.data.columns`, into a pandas frame of typed attributes: numbers,
dates or categories. What loading changed is counted in the frame's ``attrs["notes"]``,
with one line per column in ``attrs["messages"]`` (see :func:`load_accounts`). Which
attributes the models read, and how a date becomes a number, is
:mod:`keyltv.features.attributes`' concern.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from keyltv.data.columns import (
    check_float_ids,
    id_text_sql,
    missing_column_message,
    padded_sql,
    quote_identifier,
    stripped_sql,
)
from keyltv.data.schema import ISO_DATE_PATTERN, InputError, NumberFormat, describe_value
from keyltv.data.sources import (
    FILE_COLUMN,
    attach_source,
    connect_duckdb,
    read_errors,
    source_columns,
    source_types,
)

if TYPE_CHECKING:
    import duckdb
    import pandas as pd  # imported where a frame is made (see keyltv.data.transactions)


def load_accounts(
    path: str | Path | pd.DataFrame, *, id_column: str = "customer_id", label: str | None = None,
    encoding: str = "utf-8", decimal_separator: str = ".",
    thousands_separator: str | None = None, text_columns: Sequence[str] = (),
    refuse_stray_text: bool = True, date_format: str | None = None, read_dates: bool = True,
) -> pd.DataFrame:
    """Read an account attribute table, one row per account.

    Columns whose every non-blank value parses as a number (in the form that
    ``decimal_separator`` and ``thousands_separator`` give, as for the transaction log;
    a numeric Parquet column as stored) become floats; columns of dates (see
    :data:`DATE_SHARE`; a Parquet date or timestamp column as stored) become days
    (``datetime64[s]``, the time of day dropped); the others become categoricals
    (LightGBM uses both natively). A text column with a whole number written with a
    leading zero (``01234``) holds codes and stays text, and so does every column of
    ``text_columns`` (codes such as a region number, whose order means nothing).

    In a column whose other values are all numbers, a missing-value marker such as
    ``n/a``, ``NULL`` or ``#N/A`` (:data:`MISSING_TOKENS`) is read as missing and
    counted; elsewhere it is a value like any other (a region ``NA`` stays a level).
    In a column of dates, every value that is no date is read as missing and counted.

    Parameters
    ----------
    refuse_stray_text : bool
        Refuse a column of mostly numbers with a few other values (see
        :data:`MOSTLY_NUMBERS`). False reads such a column as categories, for files whose
        columns are checked where they are read (an earlier score file).
    date_format : str, optional
        The config's ``date_format`` (a strptime format) for text dates, read besides
        ISO 8601 (``2021-03-04``, perhaps with a time): an account table is often
        exported by the same system, in the same locale, as the log.
    read_dates : bool
        False leaves dates as categories of their text, for files whose columns are
        checked where they are read (an earlier score file's ``as_of``).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``customer_id`` (string), one column per attribute. ``attrs`` holds
        the file name (``source``), the counts of what loading changed (``notes``:
        ``account_ids_stripped_of_whitespace``, ``attribute_values_read_as_missing``,
        ``attribute_columns_read_as_dates``; only those above zero) and one line about
        each column with values read as missing (``messages``).

    Raises
    ------
    InputError
        Missing, duplicated or repeated columns, blank or duplicated ids, no rows,
        unreadable file, a stray text value in a column of numbers.
    """
    try:
        numbers = NumberFormat(decimal_separator, thousands_separator)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    con = connect_duckdb()
    name, duplicated, _ = attach_source(con, path, label, encoding)
    if duplicated:
        raise InputError(
            f"{name}: column {duplicated[0]!r} appears more than once in the header; "
            "keep one or rename the others"
        )
    found = source_columns(con)
    if id_column not in found:
        raise InputError(missing_column_message(name, "customer_id", id_column, found))
    check_float_ids(con, name, id_column)
    # Of several files, the column that names each row's file is no attribute.
    attributes = [c for c in found if c not in (id_column, FILE_COLUMN)]
    unknown = [c for c in text_columns if c not in attributes]
    if unknown:
        raise InputError(f"{name}: account_text_columns names {unknown[0]!r}, which is not "
                         f"an attribute column of this table (it has {attributes})")
    frame = _read_rows(con, name, id_column, attributes, numbers)
    frame, padded = _indexed_by_id(frame, name, id_column)
    typed, missing = {}, {}
    for i, column in enumerate(attributes):
        parsed = frame.pop(f"{_NUMBER_OF}{i}") if f"{_NUMBER_OF}{i}" in frame else None
        typed[column], missing[column] = _typed_attribute(
            frame[column], parsed, as_text=column in text_columns,
            where=f"{name}: column {column!r}", refuse_stray_text=refuse_stray_text,
            date_format=date_format, read_dates=read_dates)
    frame = frame.assign(**typed) if typed else frame
    read_as_missing = sum(len(tokens) for tokens in missing.values())
    dated = sum(is_dates(values) for values in typed.values())
    counts = {"account_ids_stripped_of_whitespace": padded,
              "attribute_values_read_as_missing": read_as_missing,
              "attribute_columns_read_as_dates": dated}
    frame.attrs["source"] = name
    frame.attrs["notes"] = {key: count for key, count in counts.items() if count}
    frame.attrs["messages"] = [_missing_message(name, column, tokens, typed[column])
                               for column, tokens in missing.items() if len(tokens)]
    return frame


# Prefix of the columns that hold a text attribute's value as a number (load_accounts).
_NUMBER_OF = "__keyltv_number_"
# Column that tells whether a row's id had whitespace at an edge (load_accounts).
_PADDED = "__keyltv_padded_id"

# Whole values that mark a missing number, compared after stripping and in any case:
# pandas' default ``na_values`` (less the float-printing artefacts such as '1.#IND'),
# Excel's #N/A in other languages (#NV de, #N/B nl, #N/D it/pt) and the dashes and
# question marks typed into a sheet. ``-`` is also how an accounting format shows a
# zero; it is read as missing, not 0, and the note names it. They are read as missing
# only in a column whose every other value is a number: ``NA`` is North America in a
# region column, and ``none`` or ``?`` may be a level of a column of categories.
MISSING_TOKENS = frozenset({
    "na", "n/a", "n.a.", "#n/a", "#na", "#n/a n/a", "<na>", "nan", "-nan", "null", "none",
    "#nv", "#n/b", "#n/d", "-", "--", "?",
})

# Share of a column's values (blanks and missing markers aside) that must be numbers
# for a value that is not one to be refused rather than turn the column into
# categories. One mistyped cell (``1O0`` with a letter O, an Excel ``#VALUE!``) would
# otherwise make every number a level of its own: nothing the model can rank, and
# values that a corrected table never repeats, so that the attribute is scored as
# missing for every account. A typo touches a few cells of a column; a column of
# categories in which nine values in ten are numbers is rare, and the message names
# ``account_text_columns``, which reads such a column as categories. With fewer than
# ten values, one that is not a number cannot reach the share: tiny tables stay as
# they were read before.
MOSTLY_NUMBERS = 0.9

# Share of a text column's values (blanks and missing markers aside) that must be dates
# for the column to be read as dates; its other values are read as missing and counted.
# Kept as categories, every day of a column such as customer_since or contract_end is a
# level of its own, which a tree can only memorise and a new account never matches; as
# days before each cutoff it is the account's age or the days to its contract's end.
# A contract_end with ``open`` or ``tbd`` in a few rows is still a column of dates; one
# in which more than one value in twenty is no date is text that holds some dates, and
# stays categories (as does a column named in account_text_columns). The share is not
# MOSTLY_NUMBERS' refusal: a word among dates is a common placeholder, not a typo.
DATE_SHARE = 0.95


def _read_rows(con: duckdb.DuckDBPyConnection, name: str, id_column: str,
               attributes: list[str], numbers: NumberFormat) -> pd.DataFrame:
    """The table's rows: the stripped id, whether it was padded, and each attribute.

    A text attribute comes with the number it reads as in ``numbers``' form (NULL if it
    is none), in the column ``_NUMBER_OF`` + its position.
    """
    types = source_types(con)
    ident = id_text_sql(id_column, types[id_column])
    select = [f"{stripped_sql(ident)} AS {quote_identifier(id_column)}",
              f"COALESCE({padded_sql(ident)}, false) AS {_PADDED}"]
    numbers_of = []
    for i, column in enumerate(attributes):
        if types[column] == "VARCHAR":
            # The text, and the number it reads as in the configured form (NULL if none).
            select.append(f"NULLIF({stripped_sql(quote_identifier(column))}, '') "
                          f"AS {quote_identifier(column)}")
            numbers_of.append(f"{numbers.sql(quote_identifier(column))} AS {_NUMBER_OF}{i}")
        elif types[column] == "TIMESTAMP WITH TIME ZONE":
            # Its UTC time (the day is what counts, see parse_dates): pandas gets no
            # zone to convert, which it warns about when DuckDB hands it over.
            select.append(f"timezone('UTC', {quote_identifier(column)}) "
                          f"AS {quote_identifier(column)}")
        else:
            select.append(quote_identifier(column))
    # The number form reads the stripped text of a subquery: inlined, the stripping ran
    # once per use of the text in the form's SQL (5.7 s instead of 0.4 s for a 22-column
    # score file of 711 rows; about 12 minutes with a thousands separator, on 2 busy cores).
    outer = ", ".join(["*", *numbers_of])
    with read_errors(name):
        frame = con.execute(f"SELECT {outer} FROM (SELECT {', '.join(select)} FROM src)").df()
    if frame.empty:
        raise InputError(f"{name}: no account rows (empty file or header only)")
    return frame


def _indexed_by_id(frame: pd.DataFrame, name: str, id_column: str) -> tuple[pd.DataFrame, int]:
    """``frame`` indexed by its ids, and the number of ids stripped of whitespace.

    Raises
    ------
    InputError
        A blank or duplicated id (after stripping: ``'7 '`` and ``'7'`` are one).
    """
    ids = frame[id_column]
    blank = ids.isna() | (ids == "")
    if blank.any():
        raise InputError(
            f"{name}: column {id_column!r}: blank customer id in {int(blank.sum())} row(s)"
        )
    dup = ids[ids.duplicated()]
    if len(dup):
        raise InputError(
            f"{name}: column {id_column!r}: duplicated customer id {describe_value(dup.iloc[0])} "
            f"({len(dup)} duplicate row(s)); the file needs one row per account"
        )
    padded = int(frame.pop(_PADDED).sum())
    frame = frame.set_index(id_column)
    frame.index = frame.index.astype(str)
    frame.index.name = "customer_id"
    return frame, padded


def _typed_attribute(column: pd.Series, parsed: pd.Series | None = None,
                     as_text: bool = False, where: str = "column",
                     refuse_stray_text: bool = True, date_format: str | None = None,
                     read_dates: bool = True) -> tuple[pd.Series, pd.Series]:
    """A column as numbers, as days or as categories, by what its values are.

    Numbers if every non-blank value is one, days if nearly all are dates, else a
    categorical.

    ``parsed`` holds a text column's values as numbers (NULL where they are none), read
    in SQL in the configured number form; a typed column (Parquet) has none. A text
    column with a whole number written with a leading zero (a postcode ``01234``, an
    industry code ``0111``) is a code, not a quantity: it stays text (a categorical), as
    it was written, rather than becoming 1234.0. Dates are read when ``read_dates`` (see
    :data:`DATE_SHARE` and :func:`parse_dates`).

    Returns
    -------
    values : pandas.Series
        The typed column.
    read_as_missing : pandas.Series
        The values read as missing, as written (empty if none): markers of
        :data:`MISSING_TOKENS` in a column of numbers, values that are no date in a
        column of dates.

    Raises
    ------
    InputError
        With ``refuse_stray_text``, a value that is not a number in a column of
        :data:`MOSTLY_NUMBERS`; ``where`` names the file and column.
    """
    import pandas as pd

    text = column.astype("string").str.strip().replace("", pd.NA)
    none = text.iloc[:0]
    if as_text:  # named in account_text_columns
        return text.astype("category"), none
    if read_dates and pd.api.types.is_datetime64_any_dtype(column):  # a Parquet date
        return _days(column), none
    if _is_text(column) and text.str.fullmatch(r"[+-]?0[0-9]+").fillna(False).any():
        return text.astype("category"), none
    numbers = pd.to_numeric(text, errors="coerce") if parsed is None else parsed
    others = text[text.notna() & numbers.isna()]
    tokens = others.str.lower().isin(MISSING_TOKENS)
    if numbers.notna().any() and tokens.all():
        # 'inf' parses as a number, and an infinite attribute has no place on a tree's
        # split: refused here, naming this file, rather than by score's model frame,
        # whose message named the transaction log (features and train had kept it).
        infinite = (numbers.astype(float).abs() == float("inf")).to_numpy()
        if infinite.any():
            raise InputError(
                f"{where}: value {describe_value(text[infinite].iloc[0])} is not a finite "
                f"number (in {int(infinite.sum())} row(s)); correct it or leave it blank")
        return numbers.astype(float), others
    stray, counted = others[~tokens], int(numbers.notna().sum())
    if refuse_stray_text and len(stray) and counted >= MOSTLY_NUMBERS * (counted + len(stray)):
        raise InputError(
            f"{where}: value {describe_value(stray.iloc[0])} is not a number, while "
            f"{counted} of its {counted + len(stray)} values are; correct it or leave it "
            "blank, or name the column in account_text_columns to read it as categories")
    if read_dates and _is_text(column):
        dates = parse_dates(text, date_format)
        not_dates = text[text.notna() & dates.isna()]
        counted = int(dates.notna().sum())
        words = int((~not_dates.str.lower().isin(MISSING_TOKENS)).sum())
        if counted and counted >= DATE_SHARE * (counted + words):
            return dates, not_dates
    return text.astype("category"), none


def parse_dates(text: pd.Series, date_format: str | None = None) -> pd.Series:
    """The day of each ISO 8601 date (or of ``date_format``), NaT where a value is none.

    ISO means ``2021-03-04`` or ``2021-3-4``, perhaps with a time after a space or
    ``T`` (dropped, offset and all: an attribute's date counts in days before a
    cutoff, where a day either way of a time zone does not matter).

    Parameters
    ----------
    text : pandas.Series
        Values as text (stripped; blanks missing).
    date_format : str, optional
        A strptime format for the values that are not ISO (the config's ``date_format``).

    Returns
    -------
    pandas.Series
        ``datetime64[s]`` at midnight, on ``text``'s index.
    """
    import pandas as pd

    text = text.astype("string")
    days = pd.Series(pd.NaT, index=text.index, dtype="datetime64[s]")
    iso = text.str.match(ISO_DATE_PATTERN).fillna(False).astype(bool)
    if iso.any():  # the cheap test spares a column of words the date parse
        day = text[iso].str.extract(r"^(\d{4}-\d{1,2}-\d{1,2})")[0]
        days[iso] = pd.to_datetime(day, format="%Y-%m-%d", errors="coerce")
    rest = days.isna() & text.notna()
    if date_format and rest.any():
        days[rest] = pd.to_datetime(text[rest], format=date_format,
                                    errors="coerce").dt.normalize()
    return days


def is_dates(values: pd.Series) -> bool:
    """Whether an attribute column holds dates (as :func:`load_accounts` types them)."""
    import pandas as pd

    return pd.api.types.is_datetime64_any_dtype(values)


def _days(column: pd.Series) -> pd.Series:
    """A typed date or timestamp column as days (``datetime64[s]`` at midnight).

    A time-zone-aware timestamp arrives as its UTC time (see :func:`_read_rows`).
    """
    return column.dt.normalize().astype("datetime64[s]")


def _missing_message(name: str, column: str, tokens: pd.Series, values: pd.Series) -> str:
    """One line: which values of ``column`` were read as missing, how often, and why."""
    counts = tokens.value_counts()
    listed = ", ".join(f"{describe_value(token)} in {int(n)} row(s)"
                       for token, n in counts.head(3).items())
    more = f" and {len(counts) - 3} other value(s)" if len(counts) > 3 else ""
    if is_dates(values):
        dates = int(values.notna().sum())
        why = f"as {dates} of its {dates + len(tokens)} values are dates"
    else:
        why = "as every other value of the column is a number"
    return f"{name}: column {column!r}: {listed}{more} read as missing, {why}"


def _is_text(column: pd.Series) -> bool:
    """Whether a column holds text (a CSV column, a Parquet string), not typed numbers."""
    import pandas as pd

    return not pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def parse_numbers(text: pd.Series, numbers: NumberFormat) -> pd.Series:
    """Read text as numbers in the form ``numbers`` gives, as the loaders do in SQL.

    Parameters
    ----------
    text : pandas.Series
        Values as text; blanks and missing values stay missing.
    numbers : NumberFormat
        Decimal and thousands separator (parsed strictly: see its ``sql``).

    Returns
    -------
    pandas.Series
        Floats on ``text``'s index, missing where a value is no number in that form.
    """
    import pandas as pd

    frame = pd.DataFrame({"row": range(len(text)),
                          "v": text.astype("string").str.strip().replace("", pd.NA)})
    con = connect_duckdb()
    con.register("numbers_text", frame)
    # ORDER BY: a parallel scan need not keep the frame's order.
    parsed = con.execute(f"SELECT {numbers.sql('v')} AS n FROM numbers_text ORDER BY row").df()
    return pd.Series(parsed["n"].to_numpy(dtype=float, na_value=float("nan")), index=text.index,
                     name=text.name)
