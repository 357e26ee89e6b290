"""Load and validate a transaction log as daily per-account rows.

Validation runs as SQL in an embedded DuckDB so that a 20-million-line CSV streams
through it instead of being copied into pandas. The file is parsed once into a compact
table of typed lines with their rule flags (only a broken rule reads the file again,
to quote a bad value); that table is aggregated to one row per account and day (net
amount, net margin, line count, and the account's previous order day, from which the
features take the gaps between orders), which is all the feature code needs.

Why netting by day: a return booked on the same day as its order cancels it, and a
credit note on a later day lowers that account's value without being an "order". An
order is a day whose net amount is positive; every line still counts in the value.

The source is read by :mod:`keyltv.data.sources`, its columns mapped by
:mod:`keyltv.data.columns`, parsed by :mod:`keyltv.data.lines` and checked by
:mod:`keyltv.data.checks`.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from keyltv.data.checks import check_rules
from keyltv.data.columns import check_float_ids, has_margin_column, resolve_columns
from keyltv.data.lines import (
    check_date_format,
    drop_lines,
    parse_lines,
    part_filter,
    partition_count,
)
from keyltv.data.schema import InputError, NumberFormat
from keyltv.data.sources import attach_source, connect_duckdb, read_errors, source_types

if TYPE_CHECKING:
    import pandas as pd

# pandas is imported only where a frame is read or written: ``keyltv features`` loads a
# log and writes its table from DuckDB alone, and pandas' import was half a second of it.


@dataclass(frozen=True)
class TransactionLog:
    """A validated log, held as daily per-account rows in an in-memory DuckDB table.

    Attributes
    ----------
    con : duckdb.DuckDBPyConnection
        Connection holding the table ``daily(customer_id, day, amount, margin, returns, lines,
        previous_order_day)``; ``amount`` is the day's net value, ``returns`` the (negative)
        sum of its return lines (money columns are exact decimals with 6 places:
        ``DECIMAL(18, 6)`` where the log's total cannot overflow it, else ``DECIMAL(38, 6)``),
        ``previous_order_day`` the account's order day before this one (NULL for its first
        order and for days that are not orders).
    source : str
        File name (or label) for messages.
    has_margin : bool
        Whether a margin column was given.
    first_date, last_date : datetime.date
        Range of transaction dates.
    n_lines, n_accounts : int
        Input lines and distinct accounts.
    notes : dict
        Counted handlings (returns netted, duplicate lines kept, ...), for the report.
    fingerprint : str
        Order-independent hash of the kept lines' parsed values (account, time, amount,
        margin), logged with every run.
    n_files : int
        Files read (a folder of parts or a glob names several).
    """

    con: duckdb.DuckDBPyConnection = field(repr=False)
    source: str
    has_margin: bool
    first_date: date
    last_date: date
    n_lines: int
    n_accounts: int
    notes: Mapping[str, int]
    fingerprint: str
    n_files: int = 1

    def daily(self) -> pd.DataFrame:
        """Return the daily table as a DataFrame sorted by account and day."""
        return self.con.sql("SELECT * FROM daily ORDER BY customer_id, day").df()

    def fingerprint_before(self, as_of: date) -> str:
        """Order-independent hash of the daily rows before ``as_of``: what a training sees.

        :attr:`fingerprint` covers the whole file; two exports of different length cut at
        the same ``as_of`` train on the same rows, and the registry's gate must know that
        (it took a tie for "newer data").
        """
        total = self.con.execute(
            "SELECT COALESCE(sum(hash(customer_id, day, amount, margin, returns, lines)), 0) "
            "FROM daily WHERE day < ?", [as_of]).fetchall()[0][0]
        return f"{int(total) % (1 << 64):016x}"

    @property
    def source_path(self) -> str | None:
        """The source as an absolute path (a file, folder or pattern); None for a frame.

        ``source`` is the path as typed, which names nothing once the run is looked at
        from another working directory (audit 28).
        """
        if not (Path(self.source).exists() or glob.has_magic(self.source)):
            return None
        return os.path.abspath(self.source)

    def summary(self) -> dict[str, object]:
        """Return the data fingerprint for tracking: rows, accounts, date range, hash, notes."""
        return {
            "source": self.source,
            "source_path": self.source_path,
            "files": self.n_files,
            "lines": self.n_lines,
            "accounts": self.n_accounts,
            "first_date": self.first_date.isoformat(),
            "last_date": self.last_date.isoformat(),
            "has_margin": self.has_margin,
            "hash": self.fingerprint,
            **{f"note_{k}": v for k, v in self.notes.items()},
        }


def load_transactions(
    source: str | Path | pd.DataFrame,
    *,
    columns: Mapping[str, str | None] | None = None,
    date_format: str | None = None,
    decimal_separator: str = ".",
    thousands_separator: str | None = None,
    encoding: str = "utf-8",
    label: str | None = None,
    memory_limit: str | None = None,
    drop_blank_ids: bool = False,
) -> TransactionLog:
    """Validate a transaction log and aggregate it to daily per-account rows.

    Parameters
    ----------
    source : path or DataFrame
        CSV (``.csv``, ``.txt``, ``.tsv``) or Parquet file, or an in-memory frame.
    columns : mapping, optional
        Contract role -> column name in the source, e.g. ``{"customer_id": "Kunde"}``;
        the roles are :data:`~keyltv.data.columns.ROLES`, and another key is an error.
        ``margin`` is used only if that column exists. As in the config's ``columns``
        (:class:`keyltv.config.Columns`), a line's amount is ``amount``, or with both
        ``quantity`` and ``unit_price`` mapped their product (``amount`` then left
        out or None, whatever columns the source has; mapping it too is an error),
        and ``unit_cost`` replaces ``margin`` the same way.
    date_format : str, optional
        ``strptime`` format of the date column; ISO 8601 when omitted.
    decimal_separator, thousands_separator : str, optional
        How numbers are written (see :class:`~keyltv.data.schema.NumberFormat`):
        ``","`` and ``"."`` read ``-1.234,5``; by default only the plain ``-1234.5``.
    encoding : {"utf-8", "latin-1"}, default "utf-8"
        Text encoding of CSV files (``latin-1``: older Western-European exports).
    label : str, optional
        Name used in messages for an in-memory source.
    memory_limit : str, optional
        DuckDB's memory limit for this log's connection, e.g. ``"300MB"`` (see
        ``Engine`` in :mod:`keyltv.config`); DuckDB's default when omitted.
    drop_blank_ids : bool, default False
        Leave out lines without a customer id (guest or cash sales, which no account
        can own) instead of refusing the log; they are counted in
        ``notes["blank_id_lines_dropped"]`` and nothing else in them is checked.

    Returns
    -------
    TransactionLog

    Raises
    ------
    InputError
        On any broken rule; the message names the file, the column and a bad value.
    """
    try:
        numbers = NumberFormat(decimal_separator, thousands_separator)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    con = connect_duckdb(memory_limit)
    name, duplicated, n_files = attach_source(con, source, label, encoding)
    mapping = resolve_columns(con, name, columns or {}, duplicated)
    check_float_ids(con, name, mapping["customer_id"])
    if date_format:
        check_date_format(con, date_format, name)
    if date_format and source_types(con).get(mapping["date"], "").startswith(("DATE",
                                                                               "TIMESTAMP")):
        # A typed date column (Parquet DATE or TIMESTAMP) is cast to ISO text whatever
        # the config says; the format is for text (a CSV column) and for numbers such as
        # a Parquet INT64 20230102, read as text.
        date_format = None
    with read_errors(name):
        counts = parse_lines(con, mapping, date_format, numbers, drop_blank_ids)
        parts = partition_count(int(counts["lines"]), capped=memory_limit is not None)
        notes, largest, total = check_rules(con, name, mapping, date_format, numbers, counts,
                                             drop_blank_ids, parts)
        money = _money_types(largest, total)
        # The line hashes are counted by now; dropping the column frees its memory at
        # once (33 MB at 5M lines) for the daily tables below.
        con.execute("ALTER TABLE lines DROP COLUMN line_hash")
        _aggregate_days(con, parts, *money)
    # Dropped before the window below, whose memory then reuses the lines' (one statement
    # for both held the lines through the window: about 80 MB more at the peak at 5M
    # lines, ad hoc).
    drop_lines(con)
    _create_daily(con, parts)
    return TransactionLog(
        con=con,
        source=name,
        has_margin=has_margin_column(mapping),
        first_date=counts["first_day"],
        last_date=counts["last_day"],
        n_lines=notes.pop("lines"),
        n_accounts=counts["accounts"],
        notes=notes,
        fingerprint=f"{counts['fingerprint'] % (1 << 64):016x}",
        n_files=n_files,
    )


def _money_types(largest: float, total: float) -> tuple[str, str]:
    """SQL types to sum line amounts in and to store daily money in.

    Fixed-point sums: a fully returned account nets to exactly 0, not 2e-13, in every
    later sum (floating-point sums depend on the order of the lines). Lines that fit 64
    bits (``largest``, the largest absolute line value) are summed as DECIMAL(18, 6), a
    fifth faster than (38, 6). A day's sum is at most the log's ``total`` of absolute
    values: below a tenth of DECIMAL(18, 6)'s range (no rounding of that float total
    matters), the table stores 8 bytes per money value instead of 16: the process held
    180 MB less after loading a 5M-line log (ad hoc), and that table is kept through
    training. The features are the same either way (sums of a DECIMAL are
    DECIMAL(38, 6)).

    Returns
    -------
    tuple of str
        ``(summed, stored)``.
    """
    return ("DECIMAL(18, 6)" if largest < 1e11 else "DECIMAL(38, 6)",
            "DECIMAL(18, 6)" if total < 1e11 else "DECIMAL(38, 6)")


def _aggregate_days(con: duckdb.DuckDBPyConnection, parts: int, summed: str,
                    stored: str) -> None:
    """Net the kept lines per account and day into tables ``days_0`` .. ``days_{parts-1}``.

    One table per account partition (see :func:`~keyltv.data.lines.partition_count`);
    lines without an id (``drop_blank_ids``) are left out here.
    """
    for k in range(parts):
        con.execute(
            f"""
            CREATE TEMP TABLE days_{k} AS
            SELECT customer_id, day,
                   CAST(sum(CAST(a AS {summed})) AS {stored}) AS amount,
                   CAST(sum(CAST(m AS {summed})) AS {stored}) AS margin,
                   CAST(COALESCE(sum(CAST(a AS {summed})) FILTER (WHERE a < 0), 0)
                        AS {stored}) AS returns,
                   CAST(count(*) AS INTEGER) AS lines
            FROM lines WHERE NOT blank_id {part_filter("part_key", k, parts)}
            GROUP BY ALL
            """
        )


def _create_daily(con: duckdb.DuckDBPyConnection, parts: int) -> None:
    """The table ``daily``: the partitions' account-days with each order's previous order day.

    The previous order day does not depend on any cutoff (the orders before a cutoff
    are a prefix of the account's orders), so it is found once here, not by a window in
    every feature query: that halved the query's time at 5M lines. Each partition is
    dropped as soon as it is copied.
    """
    for k in range(parts):
        con.execute(
            f"""
            {"CREATE TABLE daily AS" if k == 0 else "INSERT INTO daily"}
            SELECT *, CASE WHEN amount > 0 THEN lag(day) OVER (PARTITION BY customer_id,
                                                                   amount > 0
                                                               ORDER BY day) END
                      AS previous_order_day
            FROM days_{k}
            """
        )
        con.execute(f"DROP TABLE days_{k}")
