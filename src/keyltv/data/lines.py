"""Parse a transaction source into the table ``lines``: typed values and rule flags.

The view ``src`` (see :mod:`keyltv.data.sources`) is parsed once into a compact table
of typed lines, each with the flag of any broken rule, a hash of its values and its
account's partition key; the rules are defined here, and a broken one is reported by
:mod:`keyltv.data.checks`. The daily aggregation of :mod:`keyltv.data.transactions`
reads the table in the partitions of :func:`partition_count`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import duckdb

from keyltv.data.columns import (
    NOT_SPACE,
    id_text_sql,
    padded_sql,
    quote_identifier,
    stripped_sql,
)
from keyltv.data.schema import (
    ISO_DATE_PATTERN,
    MAX_ABS_AMOUNT,
    PLAIN_NUMBER,
    TZ_PATTERN,
    InputError,
    NumberFormat,
    reads_time_zone,
)
from keyltv.data.schema import sql_literal as _literal
from keyltv.data.sources import FILE_COLUMN, source_types


def check_date_format(con: duckdb.DuckDBPyConnection, date_format: str, name: str) -> None:
    """Refuse a ``date_format`` that DuckDB cannot use or that reads a time zone.

    Without this, a bad format was reported as a problem of the data file, and one with
    ``%z`` failed while converting the offset-aware result, with a cut-off message.
    """
    if reads_time_zone(date_format):
        raise InputError(f"{name}: date_format {date_format!r} reads a time zone (%z or %Z); "
                         "keyltv needs local dates without an offset: convert them before "
                         "export and drop %z/%Z from the format")
    try:
        con.execute("SELECT try_strptime('2000-01-01', ?)", [date_format]).fetchall()
    except duckdb.Error as exc:
        # "... Failed to parse format specifier %Q: Unrecognized format ...: %Q"
        found = re.search(r"format specifier [^:]*: (.*)", str(exc))
        reason = found.group(1) if found else str(exc).splitlines()[0]
        raise InputError(f"{name}: date_format {date_format!r} is not a strptime format "
                         f"({reason}); expected codes such as '%d.%m.%Y' for 31.01.2024"
                         ) from None


# Lines per partition of the daily aggregation, and the most partitions (see
# :func:`partition_count`).
LINES_PER_PARTITION = 1_250_000
MAX_PARTITIONS = 4


def partition_count(n_lines: int, capped: bool = False) -> int:
    """How many account partitions the lines are aggregated in, one after another.

    Grouping all lines at once held the lines, the growing daily table and a hash table
    of every account-day at the same time: that was the peak of ``keyltv features``.
    Accounts split by a hash of the id into parts of about :data:`LINES_PER_PARTITION`
    lines keep one part's hash table at a time; every account-day falls in exactly one
    part, so the table is the same. (With 4 parts, and the day instead of the time and
    no line hash held meanwhile, the peak of ``keyltv features`` at 5M lines fell from
    0.8-0.9 GB to 0.56-0.58 GB, ad hoc.) Each part scans all the lines again, so there are at
    most :data:`MAX_PARTITIONS`; under a ``memory_limit`` (``capped``), where DuckDB
    spills instead and every scan rereads spilled lines, there is one (20 parts made
    ``keyltv features`` with a 300 MB limit take 70 s at 20M lines; 41 s before any
    partitioning, 31 s now, ad hoc).
    """
    if capped:
        return 1
    return min(MAX_PARTITIONS, max(1, math.ceil(n_lines / LINES_PER_PARTITION)))


def part_filter(column: str, k: int, parts: int) -> str:
    """``AND`` condition that keeps partition ``k`` of ``parts`` (empty for one part).

    ``column`` holds hash values (``part_key`` or ``line_hash`` of the table ``lines``), so
    its remainder splits the rows evenly.
    """
    return f"AND {column} % {parts} = {k}" if parts > 1 else ""


def _create_parsed_view(con: duckdb.DuckDBPyConnection, mapping: Mapping[str, str],
                        date_format: str | None, numbers: NumberFormat,
                        strip: bool = True) -> None:
    """Typed view ``parsed`` beside the raw strings, so rules can quote bad values.

    ``parsed`` holds the line's amount ``a`` and margin ``m`` (given, or computed from
    quantity ``q``, unit price ``p`` and unit cost ``c``), the time ``ts``, each value's
    raw text and, for a source of several files, the line's ``source_file``. Text numbers
    are read in ``numbers``' form, text dates in ``date_format``.

    With ``strip`` false the strings are parsed as they are (see :func:`parse_lines`),
    and a date with whitespace at an edge is left unparsed, so that it breaks a rule.
    """
    def text(column: str) -> str:
        return stripped_sql(column) if strip else column

    types = source_types(con)

    def raw(role: str) -> str:
        if role not in mapping:
            return "NULL"
        if role == "customer_id":
            return text(id_text_sql(mapping[role], types.get(mapping[role], "VARCHAR")))
        return text(f"CAST({quote_identifier(mapping[role])} AS VARCHAR)")
    several = FILE_COLUMN in types

    def number(role: str, raw_column: str) -> str:
        # The configured form applies to text only: a typed column (Parquet DOUBLE) is
        # cast to text as a plain number whatever the config says.
        form = numbers if types.get(mapping.get(role)) == "VARCHAR" else NumberFormat()
        return form.sql(raw_column)

    con.execute(
        f"""
        CREATE VIEW raw AS SELECT
            {raw('customer_id')} AS customer_id, {raw('date')} AS date_raw,
            {raw('amount')} AS amount_raw, {raw('margin')} AS margin_raw,
            {raw('quantity')} AS quantity_raw, {raw('unit_price')} AS price_raw,
            {raw('unit_cost')} AS cost_raw,
            {quote_identifier(FILE_COLUMN) if several else 'NULL'} AS source_file
        FROM src
        """
    )
    # The line's amount and margin, as given or from quantity and prices. Products are
    # DOUBLE like the given columns; the daily sums round them to exact decimals.
    amount = "q * p" if "quantity" in mapping else number("amount", "amount_raw")
    margin = "q * (p - c)" if "unit_cost" in mapping else number("margin", "margin_raw")
    if date_format:
        # DuckDB cannot bind parameters in a view definition: inline the quoted format.
        parse = f"try_strptime(date_raw, {_literal(date_format)})"
        if not strip:
            parse = f"CASE WHEN {padded_sql('date_raw')} THEN NULL ELSE {parse} END"
    else:
        # A trailing offset would be dropped silently by the cast: refuse it instead.
        # So are the cast's special words ('epoch', 'infinity'): only digits are dates.
        iso = ISO_DATE_PATTERN if strip else _UNPADDED_ISO_DATE
        parse = f"CASE WHEN {_PLAIN_DAY} THEN CAST(TRY_CAST(date_raw AS DATE) AS TIMESTAMP) " \
                "WHEN tz THEN NULL " \
                f"WHEN NOT regexp_matches(date_raw, '{iso}') THEN NULL " \
                "ELSE TRY_CAST(date_raw AS TIMESTAMP) END"
    # Every offset has a colon before it: the cheap test spares most lines the regex
    # (CASE, not AND, which evaluates both sides of every row outside a WHERE).
    tz = f"CASE WHEN contains(date_raw, ':') " \
         f"THEN regexp_matches(date_raw, '{TZ_PATTERN}') ELSE false END"
    con.execute(
        f"""
        CREATE VIEW parsed AS SELECT customer_id, date_raw, amount_raw, margin_raw,
            quantity_raw, price_raw, cost_raw, source_file, q, p, c, tz, {parse} AS ts,
            {amount} AS a, {margin} AS m
        FROM (SELECT *, {tz} AS tz, {number("quantity", "quantity_raw")} AS q,
                     {number("unit_price", "price_raw")} AS p,
                     {number("unit_cost", "cost_raw")} AS c
              FROM raw)
        """
    )


# A plain day such as 2024-01-31, the form of nearly every line, without the regex
# below (it took a third of the date's parse, about 0.3 s at 5M lines, ad hoc): ten characters
# with dashes at 5 and 8 that cast to a day of a four-digit year can only be four digits,
# a dash, two, a dash and two (the day perhaps one digit and a trailing space, which the
# cast skips, as stripping would). Anything else takes the regex path.
_PLAIN_DAY = ("(date_raw LIKE '____-__-__' "
              "AND TRY_CAST(date_raw AS DATE) >= DATE '1000-01-01')")

# ISO_DATE_PATTERN for unstripped dates: one that ends in whitespace (or an invisible
# character, see keyltv.data.columns.STRIPPED_CODES) does not match
# (it starts with a digit in both), so that it is parsed again, stripped.
_UNPADDED_ISO_DATE = r"^\d{4}-\d{1,2}-\d{1,2}([ T]\d(.*" + NOT_SPACE + r")?)?$"

# Each rule: (key, SQL condition on `parsed`, column role, problem, what is allowed).
# One rule per line; the first broken rule in this order is reported.
_ISO = "ISO 8601 such as 2024-01-31 or 2024-01-31 14:05:00, or set date_format in the config"
_NUMBER = PLAIN_NUMBER  # replaced by the configured NumberFormat's hint in messages
BLANK_ID = "(customer_id IS NULL OR customer_id = '')"
_BELOW_MAX = f"magnitudes below {MAX_ABS_AMOUNT:g}"
_ID_AND_DATE_RULES = (
    ("blank_id", BLANK_ID, "customer_id", "blank customer id",
     "a non-blank id on every line, or drop_blank_ids: true in the config to leave such "
     "lines out (they are counted)"),
    ("blank_date", "date_raw IS NULL OR date_raw = ''", "date", "blank date", _ISO),
    ("tz_date", "tz", "date",
     "time-zone-aware date", "local dates without an offset; convert them before export"),
    ("bad_date", "date_raw <> '' AND ts IS NULL", "date", "cannot parse date", _ISO),
    # Compared as timestamps, not by year(ts): the same rule, 0.1 s less at 5M lines.
    ("odd_date", "NOT isfinite(ts) OR ts < TIMESTAMP '1900-01-01' "
                 "OR ts >= TIMESTAMP '2201-01-01'", "date",
     "implausible date",
     "years 1900 to 2200"),
)
_AMOUNT_RULES = (
    ("blank_amount", "amount_raw IS NULL OR amount_raw = ''", "amount", "blank amount",
     _NUMBER),
    ("bad_amount", "amount_raw <> '' AND a IS NULL", "amount", "not a number", _NUMBER),
    ("inf_amount", "NOT isfinite(a)", "amount", "not a finite number", _NUMBER),
    ("huge_amount", f"abs(a) >= {MAX_ABS_AMOUNT:g}", "amount", "implausible amount",
     _BELOW_MAX),
)
# With columns.quantity and columns.unit_price: each factor is checked, then the product.
_PRICED_RULES = (
    ("blank_quantity", "quantity_raw IS NULL OR quantity_raw = ''", "quantity",
     "blank quantity", _NUMBER),
    ("bad_quantity", "quantity_raw <> '' AND q IS NULL", "quantity", "not a number", _NUMBER),
    ("inf_quantity", "NOT isfinite(q)", "quantity", "not a finite number", _NUMBER),
    ("blank_price", "price_raw IS NULL OR price_raw = ''", "unit_price", "blank unit price",
     _NUMBER),
    ("bad_price", "price_raw <> '' AND p IS NULL", "unit_price", "not a number", _NUMBER),
    ("inf_price", "NOT isfinite(p)", "unit_price", "not a finite number", _NUMBER),
    ("huge_amount", f"abs(a) >= {MAX_ABS_AMOUNT:g}", "amount",
     "implausible amount (quantity x unit price)", _BELOW_MAX),
)
_MARGIN_RULES = (
    ("bad_margin", "margin_raw <> '' AND m IS NULL", "margin", "not a number",
     _NUMBER + ", or blank"),
    ("inf_margin", "NOT isfinite(m)", "margin", "not a finite number", _NUMBER),
    ("huge_margin", f"abs(m) >= {MAX_ABS_AMOUNT:g}", "margin", "implausible margin",
     _BELOW_MAX),
)
# With columns.unit_cost: a blank cost leaves the line without a margin, as a blank margin does.
_COST_RULES = (
    ("bad_cost", "cost_raw <> '' AND c IS NULL", "unit_cost", "not a number",
     _NUMBER + ", or blank"),
    ("inf_cost", "NOT isfinite(c)", "unit_cost", "not a finite number", _NUMBER),
    ("huge_margin", f"abs(m) >= {MAX_ABS_AMOUNT:g}", "margin",
     "implausible margin (quantity x (unit price - unit cost))", _BELOW_MAX),
)


def rules_for(mapping: Mapping[str, str]) -> tuple[tuple[str, str, str, str, str], ...]:
    """The rules that apply to a log with this column mapping, in reporting order."""
    return (*_ID_AND_DATE_RULES,
            *(_PRICED_RULES if "quantity" in mapping else _AMOUNT_RULES),
            *(_COST_RULES if "unit_cost" in mapping else _MARGIN_RULES))


def parse_lines(con: duckdb.DuckDBPyConnection, mapping: Mapping[str, str],
                 date_format: str | None, numbers: NumberFormat,
                 drop_blank_ids: bool = False) -> dict[str, int]:
    """Parse the source into the table ``lines``; count lines, accounts and broken rules.

    Stripping whitespace from every value took a third of the load of a clean 5M-line
    log, and clean exports have none to strip. So the values are first parsed as they
    are, and that is kept only where it gives what stripping would: no line breaks a
    rule and no account id has whitespace at an edge (checked once per distinct id).
    Otherwise the lines are parsed again, stripped. A number or date padded with
    whitespace either parses to the same value as stripped (the casts skip spaces) or
    breaks a rule; a padded date never parses (see :func:`_create_parsed_view`).

    Returns
    -------
    dict
        ``lines``, ``blank`` (lines without an id), ``broken`` (lines breaking a rule),
        ``accounts``, ``first_day``, ``last_day``, ``fingerprint`` (an integer),
        ``padded_ids`` (accounts whose id was written with whitespace at an edge) and
        ``point_zero_ids`` (distinct ids such as ``17850.0``).
    """
    padded_ids = 0
    for strip in (False, True):
        _create_parsed_view(con, mapping, date_format, numbers, strip)
        _create_lines(con, mapping, drop_blank_ids)
        lines, blank, broken, first, last, fingerprint = con.execute(
            """SELECT count(*), count(*) FILTER (WHERE blank_id),
                      count(*) FILTER (WHERE broken),
                      min(day) FILTER (WHERE NOT blank_id), max(day) FILTER (WHERE NOT blank_id),
                      -- An order-independent hash of the kept lines: a sum, not an XOR,
                      -- in which two identical lines would cancel out.
                      COALESCE(sum(line_hash) FILTER (WHERE NOT blank_id), 0)
               FROM lines""").fetchall()[0]
        accounts, any_padded, padded, point_zero = con.execute(
            f"SELECT count(*), count(*) FILTER (WHERE {padded_sql('customer_id')}), "
            # Padded ids counted as the accounts they become (' 7' and '7\t' are one).
            # An id of whitespace alone is blank once stripped, not an account: with
            # drop_blank_ids it was counted both as dropped and as stripped (audit 28).
            f"count(DISTINCT {stripped_sql('customer_id')}) "
            f"FILTER (WHERE {padded_sql('customer_id')} "
            f"AND {stripped_sql('customer_id')} <> ''), "
            # '17850.0': an integer id that a spreadsheet or pandas wrote as a float.
            "count(*) FILTER (WHERE regexp_full_match(customer_id, '-?[0-9]+[.]0+')) "
            "FROM (SELECT DISTINCT customer_id FROM lines WHERE NOT blank_id)").fetchall()[0]
        if strip or (broken == 0 and any_padded == 0):
            break
        padded_ids = int(padded)  # ids read with whitespace at an edge, stripped below
        drop_lines(con)
    return {"lines": int(lines), "blank": int(blank), "broken": int(broken),
            "accounts": int(accounts), "first_day": first, "last_day": last,
            "fingerprint": int(fingerprint), "padded_ids": padded_ids,
            "point_zero_ids": int(point_zero)}


def drop_lines(con: duckdb.DuckDBPyConnection) -> None:
    """Drop the table ``lines`` and the views it was parsed through."""
    con.execute("DROP TABLE lines")
    con.execute("DROP VIEW parsed")
    con.execute("DROP VIEW raw")


def _create_lines(con: duckdb.DuckDBPyConnection, mapping: Mapping[str, str],
                  drop_blank_ids: bool = False) -> None:
    """Parse the source once into the table ``lines``: typed values, rule flags, line hash.

    Splitting and parsing a large CSV costs far more than scanning this compact table
    several times (counts, notes, days); only a broken rule reads the file again.
    With ``drop_blank_ids``, a line without an id breaks no rule: it is only flagged
    ``blank_id``, counted and left out of the daily table.
    """
    rules = [cond for key, cond, _, _, _ in rules_for(mapping)
             if not (drop_blank_ids and key == "blank_id")]
    broken = " OR ".join(f"({cond})" for cond in rules)
    if drop_blank_ids:
        broken = f"NOT {BLANK_ID} AND ({broken})"
    # The hash is of the parsed values: lines are identical when account, time, amount
    # and margin are, however the numbers were written (10 and 10.00).
    con.execute(
        f"""CREATE TEMP TABLE lines AS
            -- The day, not the time: the rest of the load needs no more, and it
            -- takes 4 bytes a line instead of 8 (the hash still tells times apart).
            SELECT customer_id, CAST(ts AS DATE) AS day, a, m, ({broken}) AS broken,
                   {BLANK_ID} AS blank_id,
                   hash(customer_id, ts, a, m) AS line_hash,
                   -- The account's partition key (see partition_count): one byte, hashed once.
                   CAST(hash(customer_id) % 256 AS UTINYINT) AS part_key
            FROM parsed"""
    )
