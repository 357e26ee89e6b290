"""Load and validate transaction logs and account tables; write outputs atomically.

Validation runs as SQL in an embedded DuckDB so that a 20-million-line CSV streams
through it instead of being copied into pandas. The file is parsed once into a compact
table of typed lines with their rule flags (only a broken rule reads the file again,
to quote a bad value); that table is aggregated to one row per account and day (net
amount, net margin, line count, and the account's previous order day, from which the
features take the gaps between orders), which is all the feature code needs.

Why netting by day: a return booked on the same day as its order cancels it, and a
credit note on a later day lowers that account's value without being an "order". An
order is a day whose net amount is positive; every line still counts in the value.

Why the CSV header is read here and not sniffed by DuckDB: on hand-exported files the
sniffer can pick the wrong delimiter or treat the header as data when one row is
ragged, and then rows go missing without an error. keyltv reads the header line
itself, picks the delimiter from it, and has DuckDB parse strictly with those columns,
so a ragged row, a stray quote or a non-UTF-8 byte stops the job with its line number.
"""

from __future__ import annotations

import csv
import difflib
import glob
import math
import os
import re
import secrets
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import duckdb

from keyltv.data.schema import (
    ISO_DATE_PATTERN,
    MAX_ABS_AMOUNT,
    OUTLIER_FACTOR,
    PLAIN_NUMBER,
    TZ_PATTERN,
    InputError,
    NumberFormat,
    describe_value,
    reads_time_zone,
)
from keyltv.data.schema import sql_literal as _literal

if TYPE_CHECKING:
    import pandas as pd

# pandas is imported only where a frame is read or written: ``keyltv features`` loads a
# log and writes its table from DuckDB alone, and pandas' import was half a second of it.

CSV_SUFFIXES = (".csv", ".txt", ".tsv")
PARQUET_SUFFIXES = (".parquet", ".pq")
OUTPUT_SUFFIXES = (".csv", ".parquet")
DELIMITERS = (",", ";", "\t", "|")
_MAX_HEADER_BYTES = 1 << 20
# Linux's names for this process's open files: how an unnamed temporary file is named
# (linked) once complete, and how DuckDB opens one to write into it.
_OPEN_FILES = "/proc/self/fd"


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

    def summary(self) -> dict[str, object]:
        """Return the data fingerprint for tracking: rows, accounts, date range, hash, notes."""
        return {
            "source": self.source,
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
        the roles are :data:`ROLES`, and another key is an error. ``margin`` is used
        only if that column exists. As in the config's ``columns``
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
    con = _connect(memory_limit)
    name, duplicated, n_files = _attach_source(con, source, label, encoding)
    mapping = _resolve_columns(con, name, columns or {}, duplicated)
    _check_float_ids(con, name, mapping["customer_id"])
    if date_format:
        _check_date_format(con, date_format, name)
    if date_format and _source_types(con).get(mapping["date"], "").startswith(("DATE",
                                                                               "TIMESTAMP")):
        # A typed date column (Parquet DATE or TIMESTAMP) is cast to ISO text whatever
        # the config says; the format is for text (a CSV column) and for numbers such as
        # a Parquet INT64 20230102, read as text.
        date_format = None
    with _read_errors(name):
        counts = _parse_lines(con, mapping, date_format, numbers, drop_blank_ids)
        parts = _partitions(int(counts["lines"]), capped=memory_limit is not None)
        notes, largest, total = _check_rules(con, name, mapping, date_format, numbers, counts,
                                             drop_blank_ids, parts)
        # Fixed-point sums: a fully returned account nets to exactly 0, not 2e-13, in
        # every later sum (floating-point sums depend on the order of the lines). Lines
        # that fit 64 bits are summed as DECIMAL(18, 6), a fifth faster than (38, 6).
        fixed = "DECIMAL(18, 6)" if largest < 1e11 else "DECIMAL(38, 6)"
        # A day's sum is at most the log's total of absolute values: below a tenth of
        # DECIMAL(18, 6)'s range (no rounding of that float total matters), the table
        # stores 8 bytes per money value instead of 16: the process held 180 MB less
        # after loading a 5M-line log (ad hoc), and that table is kept through training.
        # The features are the same either way (sums of a DECIMAL are DECIMAL(38, 6)).
        stored = "DECIMAL(18, 6)" if total < 1e11 else "DECIMAL(38, 6)"
        # The line hashes are counted by now; dropping the column frees its memory at
        # once (33 MB at 5M lines) for the daily tables below.
        con.execute("ALTER TABLE lines DROP COLUMN line_hash")
        for k in range(parts):
            con.execute(
                f"""
                CREATE TEMP TABLE days_{k} AS
                SELECT customer_id, day,
                       CAST(sum(CAST(a AS {fixed})) AS {stored}) AS amount,
                       CAST(sum(CAST(m AS {fixed})) AS {stored}) AS margin,
                       CAST(COALESCE(sum(CAST(a AS {fixed})) FILTER (WHERE a < 0), 0)
                            AS {stored}) AS returns,
                       CAST(count(*) AS INTEGER) AS lines
                FROM lines WHERE NOT blank_id {_part_filter("part_key", k, parts)}
                GROUP BY ALL
                """
            )
    # Dropped before the window below, whose memory then reuses the lines' (one statement
    # for both held the lines through the window: about 80 MB more at the peak at 5M
    # lines, ad hoc).
    _drop_lines(con)
    # The previous order day does not depend on any cutoff (the orders before a cutoff
    # are a prefix of the account's orders), so it is found once here, not by a window
    # in every feature query: that halved the query's time at 5M lines.
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
    return TransactionLog(
        con=con,
        source=name,
        has_margin=_has_margin(mapping),
        first_date=counts["first_day"],
        last_date=counts["last_day"],
        n_lines=notes.pop("lines"),
        n_accounts=counts["accounts"],
        notes=notes,
        fingerprint=f"{counts['fingerprint'] % (1 << 64):016x}",
        n_files=n_files,
    )


def _check_date_format(con: duckdb.DuckDBPyConnection, date_format: str, name: str) -> None:
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


def _connect(memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """Open an in-memory DuckDB that prints nothing (no progress bar in batch logs).

    With ``memory_limit``, DuckDB spills what does not fit to a folder of its own under
    the system's temporary directory (by default it would use ``.tmp`` in the working
    directory); DuckDB creates the folder when it first spills and removes it on close.
    """
    con = duckdb.connect()
    try:
        con.execute("SET enable_progress_bar = false")
    except duckdb.Error:  # in Jupyter, DuckDB refuses to touch its widget progress bar
        pass
    if memory_limit is not None:
        spill = Path(tempfile.gettempdir()) / f"keyltv-duckdb-{os.getpid()}-{secrets.token_hex(4)}"
        # SET takes no bound parameters; both values are quoted literals.
        con.execute(f"SET memory_limit = {_literal(memory_limit)}")
        con.execute(f"SET temp_directory = {_literal(str(spill))}")
    return con


def _attach_source(
    con: duckdb.DuckDBPyConnection, source: object, label: str | None,
    encoding: str = "utf-8",
) -> tuple[str, list[str], int]:
    """Expose the source (a frame, or the files of :func:`_source_files`) as the view ``src``.

    Returns
    -------
    name : str
        The name used in messages.
    duplicated : list of str
        Column names that the header holds more than once (the later ones are renamed).
    n_files : int
        Files read (1 for a frame).
    """
    if not isinstance(source, (str, os.PathLike)):  # a DataFrame
        import pandas as pd  # imported by whoever made the frame: no cost here

        name = label or "<DataFrame>"
        if not isinstance(source, pd.DataFrame):
            raise InputError(f"{name}: expected a file path or a pandas DataFrame, got "
                             f"{type(source).__name__}")
        for column, dtype in source.dtypes.items():
            # DuckDB cannot scan these; say which column instead of its internal error.
            if isinstance(dtype, (pd.PeriodDtype, pd.IntervalDtype)) or dtype.kind == "c":
                raise InputError(f"{name}: column {str(column)!r}: dtype {dtype} cannot be "
                                 "read; convert it (e.g. a period with .dt.to_timestamp())")
        con.register("src_frame", source)
        con.execute("CREATE VIEW src AS SELECT * FROM src_frame")
        duplicated = sorted({str(c) for c in source.columns[source.columns.duplicated()]})
        return name, duplicated, 1
    name = str(source)
    files = _source_files(name)
    kinds = {_kind(f, name) for f in files}
    if len(kinds) > 1:
        raise InputError(f"{name}: holds both CSV and Parquet files; give one kind")
    duplicated: list[str] = []
    if kinds == {"csv"}:
        reader, duplicated = _csv_reader(files, name, encoding)
    else:
        _check_same_parquet_columns(con, files, name)
        paths = ", ".join(_literal(str(f)) for f in files)
        # Columns come from the files alone: DuckDB would otherwise add (or replace a
        # column with) the value of a key=value folder name, such as date=2023-01-02.
        reader = (f"read_parquet([{paths}], filename={_literal(FILE_COLUMN)}, "
                  "hive_partitioning=false)"
                  if len(files) > 1 else f"read_parquet({paths}, hive_partitioning=false)")
    with _read_errors(name):
        # Views cannot take bound parameters: the path is inlined as a quoted literal.
        con.execute(f"CREATE VIEW src AS SELECT * FROM {reader}")
        # count(*) reads one row without converting it to Python (a time-zone-aware
        # Parquet column would need pytz for that).
        con.execute("SELECT count(*) FROM (SELECT * FROM src LIMIT 1)").fetchall()
    return name, duplicated, len(files)


def _check_same_parquet_columns(con: duckdb.DuckDBPyConnection, files: list[Path],
                                name: str) -> None:
    """Refuse Parquet part files whose column names or types differ from the first's.

    DuckDB reads several files with the first one's schema: a later file's DOUBLE amounts
    were cast to the first file's BIGINT (2.4 read as 2), and its extra columns were left
    out, with no error. Each file's schema is read from its metadata only.
    """
    if len(files) < 2:
        return
    def columns(path: Path) -> list[tuple[str, str]]:
        with _read_errors(str(path)):
            return [(c, t) for c, t, *_ in con.execute(
                f"DESCRIBE SELECT * FROM read_parquet({_literal(str(path))}, "
                "hive_partitioning=false)").fetchall()]
    first = columns(files[0])
    for other in files[1:]:
        found = columns(other)
        if found == first:
            continue
        if [c for c, _ in found] != [c for c, _ in first]:
            raise InputError(
                f"{other}: its columns ({', '.join(repr(c) for c, _ in found)}) differ from "
                f"{files[0]}'s ({', '.join(repr(c) for c, _ in first)}); every file of {name} "
                "needs the same columns in the same order")
        column, here, there = next((c, t, u) for (c, t), (_, u) in zip(found, first, strict=True)
                                   if t != u)
        raise InputError(
            f"{other}: column {column!r} is stored as {here}, but as {there} in {files[0]}; "
            f"every file of {name} needs the same column types")


# With several files, the column of ``src`` that names each line's file, so that a
# broken rule names the file that holds the quoted value.
FILE_COLUMN = "__keyltv_file"


def _source_files(name: str) -> list[Path]:
    """The files a transaction source names: one file, a folder of parts, or a glob.

    A folder is read with its subfolders (Spark and Hive write ``part-*`` files under
    ``key=value`` folders), leaving out hidden and ``_``-prefixed entries such as
    ``_SUCCESS`` and ``.crc`` checksums. Files come in sorted order, so that a run reads
    them the same way every time.
    """
    # A name that exists is taken literally, even with glob characters ('tx[1].csv').
    if glob.has_magic(name) and not Path(name).exists():
        files = sorted(Path(p) for p in glob.glob(name, recursive=True) if Path(p).is_file())
        if not files:
            raise InputError(f"{name}: no file matches this pattern")
        return files
    path = Path(name)
    if not path.exists():
        raise InputError(f"{name}: file not found")
    if not path.is_dir():
        return [path]
    files = sorted(f for f in path.rglob("*") if f.is_file() and not any(
        part.startswith(("_", ".")) for part in f.relative_to(path).parts))
    if not files:
        raise InputError(f"{name}: the folder holds no CSV or Parquet file")
    return files


def _kind(path: Path, name: str) -> str:
    """``csv`` or ``parquet`` by suffix; any other file is refused by name."""
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    where = name if str(path) == name else f"{name}: {path}"
    raise InputError(
        f"{where}: unsupported file type {suffix or '(none)'!r}; "
        f"use one of {', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)}"
    )


def _csv_reader(files: list[Path], name: str, encoding: str = "utf-8") -> tuple[str, list[str]]:
    """Build a strict ``read_csv`` call (every column as text); list duplicated names.

    Several files must share the first one's delimiter and header.
    """
    if encoding not in ENCODINGS:
        raise InputError(f"{name}: encoding {encoding!r}: expected one of "
                         f"{', '.join(map(repr, ENCODINGS))}")
    delimiter, names = _read_header(files[0], str(files[0]), encoding)
    for other in files[1:]:
        if _read_header(other, str(other), encoding) != (delimiter, names):
            raise InputError(f"{other}: its header differs from {files[0]}'s "
                             f"({', '.join(map(repr, names))}); every file of {name} "
                             "needs the same columns in the same order")
    unique: list[str] = []
    duplicated: set[str] = set()
    for i, column in enumerate(names):
        column = column or f"column{i}"
        if column in unique:
            duplicated.add(column)
            k = 2
            while f"{column}_{k}" in unique or f"{column}_{k}" in names:
                k += 1
            column = f"{column}_{k}"
        unique.append(column)
    # all VARCHAR: ids such as 00042 must stay strings; the columns are typed in SQL.
    types = ", ".join(f"{_literal(c)}: 'VARCHAR'" for c in unique)
    paths = ", ".join(_literal(str(f)) for f in files)
    paths = f"[{paths}]" if len(files) > 1 else paths
    reader = (
        f"read_csv({paths}, auto_detect=false, header=true, hive_partitioning=false, "
        f"delim={_literal(delimiter)}, quote='\"', escape='\"', columns={{{types}}}"
        + (f", encoding={_literal(encoding)}" if encoding != "utf-8" else "")
        + (f", filename={_literal(FILE_COLUMN)})" if len(files) > 1 else ")")
    )
    return reader, sorted(duplicated)


# Encodings DuckDB's CSV reader decodes without an extension (none may be downloaded).
ENCODINGS = ("utf-8", "latin-1")
_NOT_UTF8 = ("bytes that are not UTF-8; re-export the file as UTF-8, or set encoding: "
             "latin-1 in the config for a Western-European export")


def _read_header(path: Path, name: str, encoding: str = "utf-8") -> tuple[str, list[str]]:
    """Delimiter and column names from the first line of a CSV file."""
    with open(path, "rb") as handle:
        raw = handle.readline(_MAX_HEADER_BYTES)
    if not raw:
        raise InputError(f"{name}: file is empty (expected a header and transaction rows)")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError(f"{name}: cannot read file: UTF-16 text; re-export the file as UTF-8")
    try:
        line = raw.decode("utf-8-sig" if encoding == "utf-8" else encoding).rstrip("\r\n")
    except UnicodeDecodeError:
        raise InputError(f"{name}: cannot read line 1: {_NOT_UTF8}") from None
    if not line.strip():
        raise InputError(f"{name}: line 1 is empty; expected a header with the column names")
    candidates = ("\t",) if path.suffix.lower() == ".tsv" else DELIMITERS
    parsed = {d: next(csv.reader([line], delimiter=d, quotechar='"')) for d in candidates}
    delimiter = max(candidates, key=lambda d: len(parsed[d]))  # ties: the earlier one
    return delimiter, [column.strip() for column in parsed[delimiter]]


@contextmanager
def _read_errors(name: str) -> Iterator[None]:
    """Turn DuckDB's errors about the file's content into one-line input errors.

    Only reading errors are translated; errors in keyltv's own SQL (binder, parser,
    catalog) stay internal errors.
    """
    try:
        yield
    except (duckdb.InvalidInputException, duckdb.IOException) as exc:
        # Of several files, the CSV reader's message names the one it failed in.
        file = re.search(r"^\s*file = (.+)$", str(exc), re.MULTILINE)
        raise InputError(f"{file[1].strip() if file else name}: "
                         f"{_read_error_message(exc)}") from None


def _read_error_message(exc: Exception) -> str:
    """Line number, reason and the offending line from a DuckDB reader error."""
    text = str(exc)
    line = re.search(r"CSV Error on Line: (\d+)", text)
    original = re.search(r"Original Line: ?(.*)", text)
    columns = re.search(r"Expected Number of Columns: (\d+) Found: (\d+)", text)
    if "utf-8" in text.lower() or "invalid unicode" in text.lower():
        reason = _NOT_UTF8
    elif columns:
        reason = f"expected {columns[1]} fields, found {columns[2]}"
    elif "unterminated quote" in text.lower():
        reason = "a quoted value is not closed"
    elif "state machine" in text:
        reason = "not a well-formed CSV file (mixed line endings or stray quotes?)"
    else:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        # "Invalid Input Error: File 'x' too small ..." -> "File 'x' too small ..."
        reason = re.sub(r"^[A-Za-z ]*Error: ", "", lines[0]) if lines else type(exc).__name__
    where = f"cannot read line {line[1]}" if line else "cannot read file"
    shown = f" in {describe_value(original[1])}" if line and original and original[1] else ""
    if reason == _NOT_UTF8:  # the line first, then what to do
        head, advice = _NOT_UTF8.split("; ", 1)
        return f"{where}: {head}{shown}; {advice}"
    return f"{where}: {reason}{shown}"


def _source_types(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Column -> DuckDB type of the source (``VARCHAR`` for every CSV column)."""
    return dict(con.execute("SELECT column_name, column_type FROM "
                            "(DESCRIBE SELECT * FROM src)").fetchall())


def _source_columns(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The source's columns, without the file column of a source of several files."""
    return [c for c in _source_types(con) if c != FILE_COLUMN]


def _resolve_columns(
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
    found = _source_columns(con)
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
            raise InputError(_missing_column_message(name, role, wanted, found))
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


def _has_margin(mapping: Mapping[str, str]) -> bool:
    return "margin" in mapping or "unit_cost" in mapping


def _missing_column_message(name: str, role: str, wanted: str, found: list[str]) -> str:
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


def _stripped(expression: str) -> str:
    """Wrap ``expression`` in SQL that strips surrounding whitespace of any kind.

    ``trim`` only removes spaces; exports also pad with tabs, line breaks and Excel's
    no-break space, and an id made only of those is blank.
    """
    # Replacing costs far more than testing, and almost no value needs it.
    return (f"CASE WHEN {_edges(expression)} "
            f"THEN regexp_replace({expression}, '^{_SPACE}+|{_SPACE}+$', '', 'g') "
            f"ELSE {expression} END")


def _edges(expression: str) -> str:
    """SQL that is true where ``expression`` starts or ends with whitespace to strip."""
    # The first and last code point (``x[1]``, ``x[-1]``; -1 for ''), which is what a
    # regex's anchors see, for a quarter of the cost of a regex match per value.
    return (f"(ord({expression}[1]) IN ({_SPACE_CODES}) "
            f"OR ord({expression}[-1]) IN ({_SPACE_CODES}))")


# RE2's \s is [\t\n\f\r ]; exports add the no-break space and the byte-order mark.
_SPACE = r"[\s\x{00A0}\x{FEFF}]"
_SPACE_CODES = "9, 10, 12, 13, 32, 160, 65279"


def _id_text(column: str, column_type: str) -> str:
    """SQL for an account id as text; a whole number stored as a float loses its ``.0``.

    pandas stores an integer id column with a blank as float64: 17850 would become the
    id '17850.0', which matches neither the CSV export's '17850' nor an account table.
    Every whole number of a typed float or DECIMAL column is written as the integer it
    holds, in full: 1e15 reads '1000000000000000' (DuckDB's own text is
    '1000000000000000.0', and 1.2345678901234568e17 stays in scientific notation).
    A float at or beyond the range where floats hold every whole number is refused
    before this runs (:func:`_check_float_ids`); a DECIMAL is exact at any size.

    Other values keep DuckDB's text of the number, as before: a float that is not a
    whole number reads as its shortest exact text ('1.5', '0.0001', but '1e-05' below
    that), a DECIMAL as written with its scale ('1.50'), NaN as 'nan'. Such ids are
    unusual enough to be left as they are rather than guessed at.
    """
    quoted = _quoted(column)
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


def _check_float_ids(con: duckdb.DuckDBPyConnection, name: str, column: str) -> None:
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
    kind = _source_types(con).get(column, "")
    if kind == "BOOLEAN":
        # true/false cannot tell more than two accounts apart: a wrong column mapped.
        raise InputError(f"{name}: column {column!r}: holds true/false values, not account "
                         "ids; map customer_id to the column with the ids")
    bound = EXACT_FLOAT_IDS.get(kind)
    if bound is None:
        return
    quoted = _quoted(column)
    with _read_errors(name):
        count, largest = con.execute(
            f"SELECT count(*), max(abs({quoted})) FROM src "
            f"WHERE NOT isnan({quoted}) AND abs({quoted}) >= {bound}").fetchone()
    if count:
        raise InputError(
            f"{name}: column {column!r}: {count} id(s) stored as floats at or beyond "
            f"{bound:,} (such as {largest:.17g}), where floats skip whole numbers: the ids may "
            "have been rounded, two accounts into one; store the ids as text or integers")


def _quoted(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


# Lines per partition of the daily aggregation, and the most partitions (see
# :func:`_partitions`).
LINES_PER_PARTITION = 1_250_000
MAX_PARTITIONS = 4


def _partitions(n_lines: int, capped: bool = False) -> int:
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


def _part_filter(column: str, k: int, parts: int) -> str:
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

    With ``strip`` false the strings are parsed as they are (see :func:`_parse_lines`),
    and a date with whitespace at an edge is left unparsed, so that it breaks a rule.
    """
    def text(column: str) -> str:
        return _stripped(column) if strip else column

    types = _source_types(con)

    def raw(role: str) -> str:
        if role not in mapping:
            return "NULL"
        if role == "customer_id":
            return text(_id_text(mapping[role], types.get(mapping[role], "VARCHAR")))
        return text(f"CAST({_quoted(mapping[role])} AS VARCHAR)")
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
            {_quoted(FILE_COLUMN) if several else 'NULL'} AS source_file
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
            parse = f"CASE WHEN {_edges('date_raw')} THEN NULL ELSE {parse} END"
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

# ISO_DATE_PATTERN for unstripped dates: one that ends in whitespace does not match
# (it starts with a digit in both), so that it is parsed again, stripped.
_UNPADDED_ISO_DATE = r"^\d{4}-\d{1,2}-\d{1,2}([ T]\d(.*[^\s\x{00A0}\x{FEFF}])?)?$"

# Each rule: (key, SQL condition on `parsed`, column role, problem, what is allowed).
# One rule per line; the first broken rule in this order is reported.
_ISO = "ISO 8601 such as 2024-01-31 or 2024-01-31 14:05:00, or set date_format in the config"
_NUMBER = PLAIN_NUMBER  # replaced by the configured NumberFormat's hint in messages
_BLANK_ID = "(customer_id IS NULL OR customer_id = '')"
_BELOW_MAX = f"magnitudes below {MAX_ABS_AMOUNT:g}"
_ID_AND_DATE_RULES = (
    ("blank_id", _BLANK_ID, "customer_id", "blank customer id",
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


def _rules(mapping: Mapping[str, str]) -> tuple[tuple[str, str, str, str, str], ...]:
    """The rules that apply to a log with this column mapping, in reporting order."""
    return (*_ID_AND_DATE_RULES,
            *(_PRICED_RULES if "quantity" in mapping else _AMOUNT_RULES),
            *(_COST_RULES if "unit_cost" in mapping else _MARGIN_RULES))


def _parse_lines(con: duckdb.DuckDBPyConnection, mapping: Mapping[str, str],
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
        accounts, padded, point_zero = con.execute(
            # Padded ids counted as the accounts they become (' 7' and '7\t' are one).
            f"SELECT count(*), count(DISTINCT {_stripped('customer_id')}) "
            f"FILTER (WHERE {_edges('customer_id')}), "
            # '17850.0': an integer id that a spreadsheet or pandas wrote as a float.
            "count(*) FILTER (WHERE regexp_full_match(customer_id, '-?[0-9]+[.]0+')) "
            "FROM (SELECT DISTINCT customer_id FROM lines WHERE NOT blank_id)").fetchall()[0]
        if strip or (broken == 0 and padded == 0):
            break
        padded_ids = int(padded)  # ids read with whitespace at an edge, stripped below
        _drop_lines(con)
    return {"lines": int(lines), "blank": int(blank), "broken": int(broken),
            "accounts": int(accounts), "first_day": first, "last_day": last,
            "fingerprint": int(fingerprint), "padded_ids": padded_ids,
            "point_zero_ids": int(point_zero)}


def _drop_lines(con: duckdb.DuckDBPyConnection) -> None:
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
    rules = [cond for key, cond, _, _, _ in _rules(mapping)
             if not (drop_blank_ids and key == "blank_id")]
    broken = " OR ".join(f"({cond})" for cond in rules)
    if drop_blank_ids:
        broken = f"NOT {_BLANK_ID} AND ({broken})"
    # The hash is of the parsed values: lines are identical when account, time, amount
    # and margin are, however the numbers were written (10 and 10.00).
    con.execute(
        f"""CREATE TEMP TABLE lines AS
            -- The day, not the time: the rest of the load needs no more, and it
            -- takes 4 bytes a line instead of 8 (the hash still tells times apart).
            SELECT customer_id, CAST(ts AS DATE) AS day, a, m, ({broken}) AS broken,
                   {_BLANK_ID} AS blank_id,
                   hash(customer_id, ts, a, m) AS line_hash,
                   -- The account's partition key (see _partitions): one byte, hashed once.
                   CAST(hash(customer_id) % 256 AS UTINYINT) AS part_key
            FROM parsed"""
    )


def _check_rules(
    con: duckdb.DuckDBPyConnection,
    name: str,
    mapping: Mapping[str, str],
    date_format: str | None,
    numbers: NumberFormat,
    counts: Mapping[str, int],
    drop_blank_ids: bool = False,
    parts: int = 1,
) -> tuple[dict[str, int], float, float]:
    """Raise on a broken rule; count the handled cases of ``lines``.

    ``counts`` comes from :func:`_parse_lines`. Naming the first broken rule and
    quoting a bad value takes a scan of the source, run only when there is one. The
    handled cases are counted among the lines kept (all but dropped blank ids).

    Returns
    -------
    notes : dict
        Counted handlings, ``lines`` included.
    largest : float
        The largest magnitude of an amount or margin of a kept line.
    total : float
        The larger of the sums of the magnitudes of the kept lines' amounts and margins
        (a bound on any sum of them).
    """
    lines, blank = counts["lines"], counts["blank"]
    if lines == 0:
        raise InputError(f"{name}: no transaction rows (empty file or header only)")
    if counts["broken"] > 0:
        _raise_broken_rule(con, name, mapping, date_format, numbers, drop_blank_ids)
    if blank == lines:  # only reachable with drop_blank_ids
        raise InputError(f"{name}: column {mapping['customer_id']!r}: every one of the "
                         f"{lines} line(s) has a blank customer id; nothing is left to score")
    # Distinct line hashes counted in ``parts`` partitions (equal hashes fall in the same
    # one), for the same reason as the daily table's (see _partitions).
    distinct = " + ".join(
        f"(SELECT count(*) FROM (SELECT DISTINCT line_hash FROM lines WHERE NOT blank_id "
        f"{_part_filter('line_hash', k, parts)}))" for k in range(parts))
    cursor = con.execute(
        f"""SELECT count(*) FILTER (WHERE a < 0) AS return_lines,
                   count(*) FILTER (WHERE a = 0) AS zero_amount_lines,
                   count(*) FILTER (WHERE m IS NULL) AS missing_margin,
                   -- A margin above a sale's amount (a rate over 100%) is kept, counted.
                   count(*) FILTER (WHERE a > 0 AND m > a) AS margin_above_amount,
                   -- Amounts are kept to a millionth: a smaller one adds nothing to a day.
                   count(*) FILTER (WHERE a <> 0 AND abs(a) < 5e-7) AS amount_below_precision,
                   max(a) FILTER (WHERE isfinite(a)) AS max_amount,
                   greatest(max(abs(a)), COALESCE(max(abs(m)), 0)) AS largest,
                   greatest(sum(abs(a)), COALESCE(sum(abs(m)), 0)) AS total,
                   -- Identical lines via a 64-bit hash of each: a GROUP BY over the
                   -- values held the whole log in memory (a false match: p < 1e-5 at 20M).
                   -- Distinct hashes counted by a DISTINCT subquery, not count(DISTINCT)
                   -- beside the other aggregates: 0.1 s less at 5M lines (ad hoc).
                   count(*) - ({distinct}) AS duplicate_lines
            FROM (SELECT a, m FROM lines WHERE NOT blank_id)"""
    )
    row = dict(zip([d[0] for d in cursor.description], cursor.fetchall()[0], strict=True))
    notes = {"lines": int(lines), **{k: int(row[k]) for k in ("return_lines", "zero_amount_lines")}}
    if drop_blank_ids:
        notes["blank_id_lines_dropped"] = int(blank)
    if _has_margin(mapping):
        notes["missing_margin_lines"] = int(row["missing_margin"])
        notes["margin_above_amount_lines"] = int(row["margin_above_amount"])
    notes["duplicate_lines"] = int(row["duplicate_lines"])
    if counts.get("padded_ids"):  # ' 7 ' and '7' are one account: say that they were merged
        notes["ids_stripped_of_whitespace"] = int(counts["padded_ids"])
    if counts.get("point_zero_ids"):
        # Kept as written (ids are opaque text), but they will not join to a CRM's 17850:
        # a float column exported as text. Typed float columns are read as 17850.
        notes["ids_ending_in_point_zero"] = int(counts["point_zero_ids"])
    if row["amount_below_precision"]:  # a note only when it happens: it almost never does
        notes["amount_below_precision_lines"] = int(row["amount_below_precision"])
    notes["outlier_lines"] = _count_outliers(con, row["max_amount"], _median_positive_line(con))
    return notes, float(row["largest"]), float(row["total"])


def _raise_broken_rule(
    con: duckdb.DuckDBPyConnection,
    name: str,
    mapping: Mapping[str, str],
    date_format: str | None,
    numbers: NumberFormat,
    drop_blank_ids: bool = False,
) -> None:
    """Raise for the first broken rule in :func:`_rules` order, quoting a bad value.

    With ``drop_blank_ids`` the lines without an id are not read (they are dropped).
    """
    select = ", ".join(
        f"count(*) FILTER (WHERE {cond}) AS {key}, "
        f"any_value(COALESCE({_raw_of(role, mapping)}, '')) FILTER (WHERE {cond}) AS {key}_ex, "
        f"any_value(source_file) FILTER (WHERE {cond}) AS {key}_file"
        for key, cond, role, _, _ in _rules(mapping)
    )
    kept = f"WHERE NOT {_BLANK_ID}" if drop_blank_ids else ""
    row = con.execute(f"SELECT {select} FROM parsed {kept}").df().iloc[0]
    for key, _, role, message, allowed in _rules(mapping):
        if row[key] > 0:
            column = _column_label(mapping, role)
            if date_format and role == "date" and key != "odd_date":
                allowed = f"format {date_format!r} (date_format in the config)"
            allowed = allowed.replace(PLAIN_NUMBER, numbers.hint())
            # Of several files, name the one that holds the quoted value.
            file = row[key + "_file"]
            where = f"{file}" if isinstance(file, str) else name
            of = f" of {name}" if isinstance(file, str) else ""
            raise InputError(
                f"{where}: column {column!r}: {message} {describe_value(row[key + '_ex'])} "
                f"in {int(row[key])} row(s){of}; expected {allowed}"
            )


# Buckets per doubling of the amount in :func:`_median_positive_line`: the median is
# known to within 2 ** (1 / 256) - 1, about 0.3%.
_MEDIAN_BUCKETS_PER_DOUBLING = 128


def _median_positive_line(con: duckdb.DuckDBPyConnection) -> float:
    """Median of the positive line amounts, to about 0.3%, the same on every run.

    DuckDB's exact ``median`` holds every value in memory (it ran out of a 300 MB
    ``memory_limit`` at 20M lines), and ``approx_quantile`` merges per-thread digests
    in any order (its estimate, and so the outlier count, changed from run to run).
    Lines are counted in log-spaced buckets instead, and the median is the middle of
    the bucket that holds it. NaN when no line is positive.
    """
    k = _MEDIAN_BUCKETS_PER_DOUBLING
    bucket = con.execute(
        f"""
        WITH b AS (SELECT floor(log2(a) * {k}) AS bucket, count(*) AS n FROM lines
                   WHERE a > 0 AND isfinite(a) AND NOT blank_id GROUP BY bucket),
             c AS (SELECT bucket, sum(n) OVER (ORDER BY bucket) AS below,
                          sum(n) OVER () AS total FROM b)
        SELECT min(bucket) FROM c WHERE 2 * below >= total
        """
    ).fetchall()[0][0]
    return float("nan") if bucket is None else 2.0 ** ((bucket + 0.5) / k)


def _count_outliers(con: duckdb.DuckDBPyConnection, largest: float | None,
                    median: float) -> int:
    """Lines above ``OUTLIER_FACTOR`` x the median positive line; kept, only counted.

    The extra scan runs only when the largest line is above the threshold.
    """
    if largest is None or math.isnan(median) or largest <= OUTLIER_FACTOR * median:
        return 0
    return int(con.execute("SELECT count(*) FROM lines WHERE a > ? AND NOT blank_id",
                           [OUTLIER_FACTOR * float(median)]).fetchall()[0][0])


def _raw_of(role: str, mapping: Mapping[str, str]) -> str:
    """SQL for the text a rule of ``role`` quotes: a computed value shows its factors."""
    if role == "amount" and "quantity" in mapping:
        return "concat(quantity_raw, ' x ', price_raw)"
    if role == "margin" and "unit_cost" in mapping:
        return "concat(quantity_raw, ' x (', price_raw, ' - ', cost_raw, ')')"
    return {"customer_id": "customer_id", "date": "date_raw", "amount": "amount_raw",
            "margin": "margin_raw", "quantity": "quantity_raw", "unit_price": "price_raw",
            "unit_cost": "cost_raw"}[role]


def _column_label(mapping: Mapping[str, str], role: str) -> str:
    """The column a message names; a computed amount or margin names its formula."""
    if role == "amount" and "quantity" in mapping:
        return f"{mapping['quantity']} x {mapping['unit_price']}"
    if role == "margin" and "unit_cost" in mapping:
        return f"{mapping['quantity']} x ({mapping['unit_price']} - {mapping['unit_cost']})"
    return mapping.get(role, role)


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
    con = _connect()
    name, duplicated, _ = _attach_source(con, path, label, encoding)
    if duplicated:
        raise InputError(
            f"{name}: column {duplicated[0]!r} appears more than once in the header; "
            "keep one or rename the others"
        )
    found = _source_columns(con)
    if id_column not in found:
        raise InputError(_missing_column_message(name, "customer_id", id_column, found))
    _check_float_ids(con, name, id_column)
    types = _source_types(con)
    # Of several files, the column that names each row's file is no attribute.
    attributes = [c for c in found if c not in (id_column, FILE_COLUMN)]
    unknown = [c for c in text_columns if c not in attributes]
    if unknown:
        raise InputError(f"{name}: account_text_columns names {unknown[0]!r}, which is not "
                         f"an attribute column of this table (it has {attributes})")
    select = [f"{_stripped(_id_text(id_column, types[id_column]))} AS {_quoted(id_column)}"]
    for i, column in enumerate(attributes):
        if types[column] == "VARCHAR":
            # The text, and the number it reads as in the configured form (NULL if none).
            text = f"NULLIF({_stripped(_quoted(column))}, '')"
            select += [f"{text} AS {_quoted(column)}", f"{numbers.sql(text)} AS {_NUMBER_OF}{i}"]
        else:
            select.append(_quoted(column))
    with _read_errors(name):
        frame = con.execute(f"SELECT {', '.join(select)} FROM src").df()
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


def check_writable(path: str | Path, suffixes: tuple[str, ...] = OUTPUT_SUFFIXES,
                   inputs: Mapping[str, str | Path | None] | None = None) -> Path:
    """Fail now, before any expensive work, if ``path`` cannot be written.

    Creates and removes an invisible test file in the target folder.

    Parameters
    ----------
    inputs : mapping, optional
        Option name -> input path of the same job (e.g. ``{"--transactions": ...}``):
        the output must not be one of them, which writing it would replace.

    Raises
    ------
    InputError
        Unsupported extension, a path that is a folder, or a folder that does not
        exist, is not a folder or cannot be written; an output that is an input.
    """
    path = Path(path)
    for option, source in (inputs or {}).items():
        if isinstance(source, (str, os.PathLike)) and Path(source).is_file() and \
                path.exists() and os.path.samefile(path, source):
            raise InputError(f"{path}: is also the {option} input, which writing it would "
                             "replace; write the output to another file")
    suffix = path.suffix.lower()
    if suffix not in suffixes:
        raise InputError(
            f"{path}: output must end in {' or '.join(suffixes)}, got {suffix or '(none)'!r}"
        )
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a file name")
    folder = path.parent
    if not folder.exists():
        raise InputError(f"{path}: folder {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise InputError(f"{path}: {str(folder)!r} is not a folder")
    handle, tmp = _open_temp(path)
    os.close(handle)
    if tmp is not None:
        tmp.unlink(missing_ok=True)
    return path


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write CSV or Parquet (by extension) atomically (see :func:`write_atomic`).

    Raises
    ------
    InputError
        Unsupported extension, or a folder that does not exist or cannot be written.
    """
    path = check_writable(path)
    if path.suffix.lower() == ".csv":
        return write_atomic(path, lambda handle: frame.to_csv(handle, index=False))
    # Dictionary pages only for text and category columns: on float columns Arrow builds
    # a dictionary and then drops it (nearly all values differ), which took 60% of the
    # write of 250,000 accounts. The values and dtypes read back are the same.
    dictionary = [str(c) for c in frame.columns if frame[c].dtype.kind != "f"]
    return write_atomic(path, lambda handle: frame.to_parquet(handle, index=False,
                                                              use_dictionary=dictionary))


def can_copy_query() -> bool:
    """Whether :func:`copy_query` works here: DuckDB reaches the open file through /proc."""
    return os.path.isdir(_OPEN_FILES)


def copy_query(con: duckdb.DuckDBPyConnection, query: str, params: Mapping[str, object],
               path: str | Path) -> int:
    """Have DuckDB write ``query``'s result to CSV or Parquet (by extension), atomically.

    No frame is made in Python: DuckDB's ``COPY`` writes into :func:`write_atomic`'s
    file, which it opens by its /proc name (``USE_TMP_FILE false`` keeps it from writing
    beside that name instead). Needs :func:`can_copy_query`.

    Returns
    -------
    int
        Rows written.

    Raises
    ------
    InputError
        Unsupported extension, or a folder that does not exist or cannot be written.
    """
    path = check_writable(path)
    fmt = "csv" if path.suffix.lower() == ".csv" else "parquet"
    rows = 0

    def copy(handle: BinaryIO) -> None:
        nonlocal rows
        target = _literal(f"{_OPEN_FILES}/{handle.fileno()}")
        rows = con.execute(f"COPY ({query}) TO {target} (FORMAT {fmt}, USE_TMP_FILE false)",
                           params).fetchall()[0][0]

    write_atomic(path, copy)
    return int(rows)


def write_text(text: str, path: str | Path, encoding: str = "utf-8") -> Path:
    """Write a text file (a report) atomically (see :func:`write_atomic`)."""
    return write_atomic(Path(path), lambda handle: handle.write(text.encode(encoding)))


def write_atomic(path: Path, write: Callable[[BinaryIO], object]) -> Path:
    """Write through ``write(handle)`` to a temporary file, then rename it onto ``path``.

    On Linux the temporary file is anonymous (``O_TMPFILE``): it has no name until it
    is complete, so a run killed at any point (even by SIGKILL) leaves the previous
    file intact and no partial one. Elsewhere it is a hidden ``.NAME.*.tmp`` file in
    the same folder, removed on any error the process survives. Data and rename are
    flushed to disk before returning.

    Raises
    ------
    InputError
        If the folder does not exist or cannot be written.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a file name")
    handle, tmp = _open_temp(path)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
            if tmp is None:
                tmp = _name_anonymous(stream.fileno(), path)
        os.replace(tmp, path)
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    return path


def _open_temp(path: Path) -> tuple[int, Path | None]:
    """Open a file in ``path``'s folder: anonymous if possible (then the path is None)."""
    folder = path.parent
    if hasattr(os, "O_TMPFILE") and os.path.isdir(_OPEN_FILES):
        try:
            return os.open(folder, os.O_TMPFILE | os.O_WRONLY, 0o666), None
        except OSError:
            pass  # not supported by this file system: fall back to a named temp file
    try:
        handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise InputError(
            f"{path}: cannot write to folder {str(folder)!r} ({exc.strerror})"
        ) from None
    os.chmod(tmp, 0o666 & ~_umask())
    return handle, Path(tmp)


def _name_anonymous(handle: int, path: Path) -> Path:
    """Give the finished anonymous file a hidden name next to ``path`` (for the rename)."""
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        # A dir fd makes os.link call linkat(AT_SYMLINK_FOLLOW), which resolves the
        # /proc link to the open file (plain link() would try to link the symlink).
        os.link(f"{_OPEN_FILES}/{handle}", tmp.name, dst_dir_fd=folder, follow_symlinks=True)
    finally:
        os.close(folder)
    return tmp


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable; not every platform can open a folder."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)
