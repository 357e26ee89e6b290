"""Which source column plays which role, and SQL that reads a column's values.

Roles are mapped to the columns of the view ``src`` (see :mod:`keyltv.data.sources`)
by the config's rules; account ids are read as text, and values are stripped of
whitespace of any kind, the same way in the transaction log and the account table.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping

import duckdb

from keyltv.data.schema import InputError
from keyltv.data.sources import read_errors, source_columns, source_types


def resolve_columns(
    con: duckdb.DuckDBPyConnection,
    name: str,
    columns: Mapping[str, str | None],
    duplicated: list[str] | None = None,
) -> dict[str, str]:
    """Map contract roles to source columns; fail on a missing or ambiguous column.

    The rules are the config's (:class:`keyltv.config.Columns`), with its wording, for
    callers of the Python API: a role that is not one of :data:`ROLES` (a typo such as
    ``customr_id``) is refused, as the config refuses an unknown field, rather than
    left unread while the default column is used.
    """
    unknown = [str(role) for role in columns if role not in ROLES]
    if unknown:
        near = difflib.get_close_matches(unknown[0], ROLES, n=1)
        maybe = f" (did you mean {near[0]!r}?)" if near else ""
        raise InputError(f"{name}: columns.{unknown[0]} is not a column role{maybe}; roles: "
                         f"{', '.join(ROLES)}")
    found = source_columns(con)
    mapping: dict[str, str] = {}
    priced = columns.get("quantity") is not None or columns.get("unit_price") is not None
    if priced and (columns.get("quantity") is None or columns.get("unit_price") is None):
        raise InputError(f"{name}: set both columns.quantity and columns.unit_price (a line's "
                         "amount is their product), or neither")
    if priced and columns.get("amount") is not None:
        raise InputError(f"{name}: columns.amount and columns.quantity x unit_price are both "
                         "mapped; set columns.amount to None to use the product, or drop "
                         "quantity and unit_price")
    if columns.get("unit_cost") is not None and columns.get("margin") is not None:
        raise InputError(f"{name}: columns.margin and columns.unit_cost are both mapped; set "
                         "columns.margin to None to use quantity x (unit_price - unit_cost), or "
                         "drop unit_cost")
    defaults = {"customer_id": "customer_id", "date": "date",
                "amount": None if priced else "amount",
                "margin": None if columns.get("unit_cost") is not None else "margin"}
    for role in ROLES:
        wanted = columns.get(role, defaults.get(role))
        if wanted is None:
            continue
        if wanted in (duplicated or ()):
            raise InputError(
                f"{name}: column {wanted!r} appears more than once in the header; "
                "keep one or rename the others"
            )
        if wanted in found:
            mapping[role] = wanted
        elif role != "margin":
            raise InputError(missing_column_message(name, role, wanted, found))
    if "unit_cost" in mapping and not priced:
        raise InputError(f"{name}: columns.unit_cost needs columns.quantity and "
                         "columns.unit_price (margin = quantity x (unit_price - unit_cost))")
    # One column read as two values (quantity and unit price both 'Quantity') would
    # turn every line into another number: a return of -1 became a sale of 1.
    owner: dict[str, str] = {}
    for role, column in mapping.items():
        if column in owner:
            raise InputError(f"{name}: columns.{owner[column]} and columns.{role} both name "
                             f"column {column!r}; each needs a column of its own")
        owner[column] = role
    return mapping


# Contract roles a mapping may name: the line's amount is either ``amount`` or
# ``quantity`` x ``unit_price``, its margin either ``margin`` or
# ``quantity`` x (``unit_price`` - ``unit_cost``).
ROLES = ("customer_id", "date", "amount", "margin", "quantity", "unit_price", "unit_cost")


def has_margin_column(mapping: Mapping[str, str]) -> bool:
    """Whether the mapping gives lines a margin (a margin column, or a unit cost)."""
    return "margin" in mapping or "unit_cost" in mapping


def missing_column_message(name: str, role: str, wanted: str, found: list[str]) -> str:
    """One line naming the missing column, a near miss in ``found`` and the config key."""
    hint = f" (mapped from role {role!r})" if wanted != role else ""
    near = [c for c in found if _squashed(c) == _squashed(wanted)]
    maybe = f" (did you mean {near[0]!r}?)" if near else ""
    return (
        f"{name}: column {wanted!r}{hint} is missing{maybe}; found columns: "
        f"{', '.join(map(repr, found))}; map it under 'columns.{role}' in the config"
    )


def _squashed(column: str) -> str:
    """Column name without case, spaces and punctuation: 'Customer ID' ~ 'customer_id'."""
    return re.sub(r"[^0-9a-z]", "", column.lower())


def stripped_sql(expression: str) -> str:
    """Wrap ``expression`` in SQL that strips surrounding whitespace of any kind.

    ``trim`` only removes spaces; exports also pad with tabs, line breaks, Excel's
    no-break space and invisible characters such as a zero-width space (see
    :data:`STRIPPED_CODES`), and an id made only of those is blank.
    """
    # Replacing costs far more than testing, and almost no value needs it.
    return (f"CASE WHEN {padded_sql(expression)} "
            f"THEN regexp_replace({expression}, '^{_SPACE}+|{_SPACE}+$', '', 'g') "
            f"ELSE {expression} END")


def padded_sql(expression: str) -> str:
    """SQL that is true where ``expression`` starts or ends with a code point to strip."""
    # The first and last code point (``x[1]``, ``x[-1]``; -1 for ''), which is what a
    # regex's anchors see, for a quarter of the cost of a regex match per value.
    return (f"(ord({expression}[1]) IN ({_SPACE_CODES}) "
            f"OR ord({expression}[-1]) IN ({_SPACE_CODES}))")


# Code points stripped at a value's edges. RE2's \s is only [\t\n\f\r ]; exports and
# pasted values add the other Unicode spaces (the no-break space of Excel, the narrow
# one of a French locale, the byte-order mark) and invisible format characters: a
# zero-width space, joiner or word joiner, a soft hyphen and the bidirectional marks
# that text copied from a web page or a right-to-left app carries. Left in place, 'A7'
# and 'A7' + U+200B look alike and are two accounts. Only the edges are tested: an
# IN list on the first and last code point costs little per value (lines.py checks
# each distinct id, and each value only when a log needs its second, stripped pass).
STRIPPED_CODES = (
    9, 10, 11, 12, 13, 32, 0x85, 0xA0, 0xAD, 0x61C, 0x1680, 0x180E,
    *range(0x2000, 0x2010), *range(0x2028, 0x2030), *range(0x205F, 0x2065),
    *range(0x2066, 0x206A), 0x3000, 0xFEFF,
)
_SPACE_CLASS = "".join(f"\\x{{{code:04X}}}" for code in STRIPPED_CODES)
_SPACE = f"[{_SPACE_CLASS}]"
# RE2 character class of anything but those (a value's last character, lines.py).
NOT_SPACE = f"[^{_SPACE_CLASS}]"
_SPACE_CODES = ", ".join(map(str, STRIPPED_CODES))


def id_text_sql(column: str, column_type: str) -> str:
    """SQL for an account id as text; a whole number stored as a float loses its ``.0``.

    pandas stores an integer id column with a blank as float64: 17850 would become the
    id '17850.0', which matches neither the CSV export's '17850' nor an account table.
    Every whole number of a typed float or DECIMAL column is written as the integer it
    holds, in full: 1e15 reads '1000000000000000' (DuckDB's own text is
    '1000000000000000.0', and 1.2345678901234568e17 stays in scientific notation).
    A float at or beyond the range where floats hold every whole number is refused
    before this runs (:func:`check_float_ids`); a DECIMAL is exact at any size.

    Other values keep DuckDB's text of the number, as before: a float that is not a
    whole number reads as its shortest exact text ('1.5', '0.0001', but '1e-05' below
    that), a DECIMAL as written with its scale ('1.50'), NaN as 'nan'. Such ids are
    unusual enough to be left as they are rather than guessed at.
    """
    quoted = quote_identifier(column)
    whole = f"CASE WHEN {quoted} = trunc({quoted}) "
    if column_type.startswith("DECIMAL"):
        return whole + (f"THEN CAST(CAST({quoted} AS HUGEINT) AS VARCHAR) "
                        f"ELSE CAST({quoted} AS VARCHAR) END")
    if column_type not in EXACT_FLOAT_IDS:
        return f"CAST({quoted} AS VARCHAR)"
    # The bound also keeps NaN (equal to its trunc in DuckDB) and infinity from the cast.
    return whole + (f"AND abs({quoted}) < {EXACT_FLOAT_IDS[column_type]} "
                    f"THEN CAST(CAST({quoted} AS BIGINT) AS VARCHAR) "
                    f"ELSE CAST({quoted} AS VARCHAR) END")


# Float types of an id column, and the bound (2**53 for float64, 2**24 for float32)
# below which each holds every whole number exactly.
EXACT_FLOAT_IDS = {"DOUBLE": 2**53, "FLOAT": 2**24}


def check_float_ids(con: duckdb.DuckDBPyConnection, name: str, column: str) -> None:
    """Refuse ids of a float column at or beyond its exact range (see :data:`EXACT_FLOAT_IDS`).

    Beyond it a float cannot hold every whole number: the ids were rounded when they
    were stored as floats (123456789012345678 became 123456789012345680), and two
    accounts may have become one. No text of the float can undo that, so the log is
    refused rather than read with ids that may be wrong.

    Raises
    ------
    InputError
        Naming the column, the count and the largest such id.
    """
    kind = source_types(con).get(column, "")
    if kind == "BOOLEAN":
        # true/false cannot tell more than two accounts apart: a wrong column mapped.
        raise InputError(f"{name}: column {column!r}: holds true/false values, not account "
                         "ids; map customer_id to the column with the ids")
    bound = EXACT_FLOAT_IDS.get(kind)
    if bound is None:
        return
    quoted = quote_identifier(column)
    with read_errors(name):
        count, largest = con.execute(
            f"SELECT count(*), max(abs({quoted})) FROM src "
            f"WHERE NOT isnan({quoted}) AND abs({quoted}) >= {bound}").fetchone()
    if count:
        raise InputError(
            f"{name}: column {column!r}: {count} id(s) stored as floats at or beyond "
            f"{bound:,} (such as {largest:.17g}), where floats skip whole numbers: the ids may "
            "have been rounded, two accounts into one; store the ids as text or integers")


def quote_identifier(column: str) -> str:
    """``column`` as a double-quoted SQL identifier (any name a header can hold)."""
    return '"' + column.replace('"', '""') + '"'
