"""Load and validate an account attribute table, one row per account.

The table is read as the transaction log is (:mod:`keyltv.data.sources`), with its ids
read as in :mod:`keyltv.data.columns`, into a pandas frame of typed attributes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from keyltv.data.columns import (
    check_float_ids,
    id_text_sql,
    missing_column_message,
    quote_identifier,
    stripped_sql,
)
from keyltv.data.schema import InputError, NumberFormat, describe_value
from keyltv.data.sources import (
    FILE_COLUMN,
    attach_source,
    connect_duckdb,
    read_errors,
    source_columns,
    source_types,
)

if TYPE_CHECKING:
    import pandas as pd  # imported where a frame is made (see keyltv.data.transactions)


def load_accounts(
    path: str | Path | pd.DataFrame, *, id_column: str = "customer_id", label: str | None = None,
    encoding: str = "utf-8", decimal_separator: str = ".",
    thousands_separator: str | None = None, text_columns: Sequence[str] = (),
) -> pd.DataFrame:
    """Read an account attribute table, one row per account.

    Columns whose every non-blank value parses as a number (in the form that
    ``decimal_separator`` and ``thousands_separator`` give, as for the transaction log;
    a numeric Parquet column as stored) become floats; the others become categoricals
    (LightGBM uses both natively). A text column with a whole number written with a
    leading zero (``01234``) holds codes and stays text, and so does every column of
    ``text_columns`` (codes such as a region number, whose order means nothing).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``customer_id`` (string), one column per attribute; the file name is
        kept in ``frame.attrs["source"]`` for messages.

    Raises
    ------
    InputError
        Missing, duplicated or repeated columns, blank or duplicated ids, no rows,
        unreadable file.
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
    types = source_types(con)
    # Of several files, the column that names each row's file is no attribute.
    attributes = [c for c in found if c not in (id_column, FILE_COLUMN)]
    unknown = [c for c in text_columns if c not in attributes]
    if unknown:
        raise InputError(f"{name}: account_text_columns names {unknown[0]!r}, which is not "
                         f"an attribute column of this table (it has {attributes})")
    select = [f"{stripped_sql(id_text_sql(id_column, types[id_column]))} AS {quote_identifier(id_column)}"]
    numbers_of = []
    for i, column in enumerate(attributes):
        if types[column] == "VARCHAR":
            # The text, and the number it reads as in the configured form (NULL if none).
            select.append(f"NULLIF({stripped_sql(quote_identifier(column))}, '') "
                          f"AS {quote_identifier(column)}")
            numbers_of.append(f"{numbers.sql(quote_identifier(column))} AS {_NUMBER_OF}{i}")
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
    frame = frame.set_index(id_column)
    frame.index = frame.index.astype(str)
    frame.index.name = "customer_id"
    typed = {}
    for i, column in enumerate(attributes):
        parsed = frame.pop(f"{_NUMBER_OF}{i}") if f"{_NUMBER_OF}{i}" in frame else None
        typed[column] = _typed_attribute(frame[column], parsed,
                                         as_text=column in text_columns)
    frame = frame.assign(**typed) if typed else frame
    frame.attrs["source"] = name
    return frame


# Prefix of the columns that hold a text attribute's value as a number (load_accounts).
_NUMBER_OF = "__keyltv_number_"


def _typed_attribute(column: pd.Series, parsed: pd.Series | None = None,
                     as_text: bool = False) -> pd.Series:
    """Numeric if every non-blank value is a number, else a categorical.

    ``parsed`` holds a text column's values as numbers (NULL where they are none), read
    in SQL in the configured number form; a typed column (Parquet) has none. A text
    column with a whole number written with a leading zero (a postcode ``01234``, an
    industry code ``0111``) is a code, not a quantity: it stays text (a categorical), as
    it was written, rather than becoming 1234.0.
    """
    import pandas as pd

    text = column.astype("string").str.strip().replace("", pd.NA)
    if as_text:  # named in account_text_columns
        return text.astype("category")
    if _is_text(column) and text.str.fullmatch(r"[+-]?0[0-9]+").fillna(False).any():
        return text.astype("category")
    numbers = pd.to_numeric(text, errors="coerce") if parsed is None else parsed
    if numbers.notna().sum() == text.notna().sum():
        return numbers.astype(float)
    return text.astype("category")


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
