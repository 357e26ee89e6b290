"""Load and validate transaction logs and account tables; write outputs atomically.

Validation runs as SQL in an embedded DuckDB so that a 20-million-line CSV streams
through two scans instead of being copied into pandas. The first scan counts every
rule violation; the second aggregates the log to one row per account and day (net
amount, net margin, line count), which is all the feature code needs.

Why netting by day: a return booked on the same day as its order cancels it, and a
credit note on a later day lowers that account's value without being an "order". An
order is a day whose net amount is positive; every line still counts in the value.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd

from keyltv.data.schema import TZ_PATTERN, InputError, describe_value

CSV_SUFFIXES = (".csv", ".txt", ".tsv")
PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass(frozen=True)
class TransactionLog:
    """A validated log, held as daily per-account rows in an in-memory DuckDB table.

    Attributes
    ----------
    con : duckdb.DuckDBPyConnection
        Connection holding the table ``daily(customer_id, day, amount, margin, returns, lines)``;
        ``amount`` is the day's net value, ``returns`` the (negative) sum of its return lines.
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
        Order-independent hash of the daily table, logged with every run.
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

    def daily(self) -> pd.DataFrame:
        """Return the daily table as a DataFrame sorted by account and day."""
        return self.con.sql("SELECT * FROM daily ORDER BY customer_id, day").df()

    def summary(self) -> dict[str, object]:
        """Data fingerprint for tracking: rows, accounts, date range, hash, notes."""
        return {
            "source": self.source,
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
    label: str | None = None,
) -> TransactionLog:
    """Validate a transaction log and aggregate it to daily per-account rows.

    Parameters
    ----------
    source : path or DataFrame
        CSV (``.csv``, ``.txt``, ``.tsv``) or Parquet file, or an in-memory frame.
    columns : mapping, optional
        Contract role -> column name in the source, e.g. ``{"customer_id": "Kunde"}``.
        ``margin`` is used only if that column exists.
    date_format : str, optional
        ``strptime`` format of the date column; ISO 8601 when omitted.
    label : str, optional
        Name used in messages for an in-memory source.

    Returns
    -------
    TransactionLog

    Raises
    ------
    InputError
        On any broken rule; the message names the file, the column and a bad value.
    """
    con = duckdb.connect()
    name = _attach_source(con, source, label)
    mapping = _resolve_columns(con, name, columns or {})
    _create_parsed_view(con, mapping, date_format)
    notes = _check_rules(con, name, mapping, date_format)
    con.execute(
        """
        CREATE TABLE daily AS
        SELECT customer_id, CAST(ts AS DATE) AS day, sum(a) AS amount,
               sum(m) AS margin, COALESCE(sum(a) FILTER (WHERE a < 0), 0) AS returns,
               CAST(count(*) AS INTEGER) AS lines
        FROM parsed GROUP BY ALL
        """
    )
    con.execute("DROP VIEW parsed")
    stats = con.execute(
        """
        SELECT min(day), max(day), count(DISTINCT customer_id),
               CAST(bit_xor(hash(customer_id, day, round(amount, 6), round(margin, 6))) AS VARCHAR)
        FROM daily
        """
    ).fetchall()[0]
    return TransactionLog(
        con=con,
        source=name,
        has_margin="margin" in mapping,
        first_date=stats[0],
        last_date=stats[1],
        n_lines=notes.pop("lines"),
        n_accounts=int(stats[2]),
        notes=notes,
        fingerprint=f"{int(stats[3]):016x}"[-16:],
    )


def _attach_source(con: duckdb.DuckDBPyConnection, source: object, label: str | None) -> str:
    """Expose the source as the view ``src``; return the name used in messages."""
    if isinstance(source, pd.DataFrame):
        con.register("src_frame", source)
        con.execute("CREATE VIEW src AS SELECT * FROM src_frame")
        return label or "<DataFrame>"
    path = Path(source)
    name = str(path)
    if not path.exists():
        raise InputError(f"{name}: file not found")
    if path.is_dir():
        raise InputError(f"{name}: is a directory, expected a CSV or Parquet file")
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        if path.stat().st_size == 0:
            raise InputError(f"{name}: file is empty (expected a header and transaction rows)")
        # all_varchar: ids such as 00042 must stay strings; we type the columns ourselves.
        reader = "read_csv(?, all_varchar=true, header=true)"
    elif suffix in PARQUET_SUFFIXES:
        reader = "read_parquet(?)"
    else:
        raise InputError(
            f"{name}: unsupported file type {suffix or '(none)'!r}; "
            f"use one of {', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)}"
        )
    try:
        # Views cannot take bound parameters: inline the path as a quoted SQL literal.
        literal = "'" + str(path).replace("'", "''") + "'"
        con.execute(f"CREATE VIEW src AS SELECT * FROM {reader.replace('?', literal)}")
        con.execute("SELECT * FROM src LIMIT 1").fetchall()
    except duckdb.Error as exc:
        raise InputError(f"{name}: cannot read file: {_first_line(exc)}") from None
    return name


def _first_line(exc: Exception) -> str:
    """Keep DuckDB's headline and the offending line, not its multi-line advice."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    head = lines[0] if lines else exc.__class__.__name__
    if "not utf-8" in str(exc).lower():
        return "bytes that are not UTF-8; re-export the file as UTF-8"
    return head


def _source_columns(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [row[0] for row in con.execute("DESCRIBE SELECT * FROM src").fetchall()]


def _resolve_columns(
    con: duckdb.DuckDBPyConnection, name: str, columns: Mapping[str, str | None]
) -> dict[str, str]:
    """Map contract roles to source columns; fail on a missing required column."""
    found = _source_columns(con)
    mapping: dict[str, str] = {}
    for role in ("customer_id", "date", "amount", "margin"):
        wanted = columns.get(role, role) if role in columns else role
        if wanted is None:
            continue
        if wanted in found:
            mapping[role] = wanted
        elif role != "margin":
            hint = f" (mapped from role {role!r})" if wanted != role else ""
            raise InputError(
                f"{name}: column {wanted!r}{hint} is missing; found columns: "
                f"{', '.join(map(repr, found))}; map it under 'columns.{role}' in the config"
            )
    return mapping


def _quoted(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def _create_parsed_view(
    con: duckdb.DuckDBPyConnection, mapping: Mapping[str, str], date_format: str | None
) -> None:
    """Typed view ``parsed`` beside the raw strings, so rules can quote bad values."""
    margin = f"CAST({_quoted(mapping['margin'])} AS VARCHAR)" if "margin" in mapping else "NULL"
    con.execute(
        f"""
        CREATE VIEW raw AS SELECT
            trim(CAST({_quoted(mapping['customer_id'])} AS VARCHAR)) AS customer_id,
            trim(CAST({_quoted(mapping['date'])} AS VARCHAR)) AS date_raw,
            trim(CAST({_quoted(mapping['amount'])} AS VARCHAR)) AS amount_raw,
            trim({margin}) AS margin_raw
        FROM src
        """
    )
    if date_format:
        parse = "try_strptime(date_raw, $fmt)"
    else:
        # A trailing offset would be dropped silently by the cast: refuse it instead.
        parse = f"CASE WHEN regexp_matches(date_raw, '{TZ_PATTERN}') THEN NULL " \
                "ELSE TRY_CAST(date_raw AS TIMESTAMP) END"
    sql = f"""
        CREATE VIEW parsed AS SELECT customer_id, date_raw, amount_raw, margin_raw,
            {parse} AS ts, TRY_CAST(amount_raw AS DOUBLE) AS a,
            TRY_CAST(margin_raw AS DOUBLE) AS m
        FROM raw
    """
    if date_format:
        # DuckDB cannot bind parameters in a view definition: inline the quoted format.
        sql = sql.replace("$fmt", "'" + date_format.replace("'", "''") + "'")
    con.execute(sql)


# Each rule: (key, SQL condition on `parsed`, column role, message). One rule per line.
_RULES = (
    ("blank_id", "customer_id IS NULL OR customer_id = ''", "customer_id",
     "blank customer id"),
    ("blank_date", "date_raw IS NULL OR date_raw = ''", "date", "blank date"),
    ("tz_date", f"regexp_matches(date_raw, '{TZ_PATTERN}')", "date",
     "time-zone-aware date (convert to local dates without offset)"),
    ("bad_date", "date_raw <> '' AND ts IS NULL", "date", "cannot parse date"),
    ("odd_date", "year(ts) < 1900 OR year(ts) > 2200", "date", "implausible date"),
    ("blank_amount", "amount_raw IS NULL OR amount_raw = ''", "amount", "blank amount"),
    ("bad_amount", "amount_raw <> '' AND a IS NULL", "amount", "not a number"),
    ("inf_amount", "NOT isfinite(a)", "amount", "not a finite number"),
    ("bad_margin", "margin_raw <> '' AND m IS NULL", "margin", "not a number"),
    ("inf_margin", "NOT isfinite(m)", "margin", "not a finite number"),
)


def _check_rules(
    con: duckdb.DuckDBPyConnection,
    name: str,
    mapping: Mapping[str, str],
    date_format: str | None,
) -> dict[str, int]:
    """Count every rule violation in one scan; raise on the first broken rule."""
    select = ", ".join(
        f"count(*) FILTER (WHERE {cond}) AS {key}, "
        f"any_value(COALESCE({_raw_of(role)}, '')) FILTER (WHERE {cond}) AS {key}_ex"
        for key, cond, role, _ in _RULES
    )
    row = con.execute(
        f"""SELECT count(*) AS lines, {select},
                   count(*) FILTER (WHERE a < 0) AS return_lines,
                   count(*) FILTER (WHERE a = 0) AS zero_amount_lines,
                   count(*) FILTER (WHERE m IS NULL) AS missing_margin
            FROM parsed"""
    ).df().iloc[0]
    if row["lines"] == 0:
        raise InputError(f"{name}: no transaction rows (empty file or header only)")
    for key, _, role, message in _RULES:
        if row[key] > 0:
            column = mapping.get(role, role)
            expected = f"format {date_format!r}" if key == "bad_date" and date_format else None
            hint = f", expected {expected}" if expected else ""
            raise InputError(
                f"{name}: column {column!r}: {message} {describe_value(row[key + '_ex'])} "
                f"in {int(row[key])} row(s){hint}"
            )
    notes = {k: int(row[k]) for k in ("lines", "return_lines", "zero_amount_lines")}
    if "margin" in mapping:
        notes["missing_margin_lines"] = int(row["missing_margin"])
    notes["duplicate_lines"] = int(
        con.execute(
            "SELECT COALESCE(sum(n - 1), 0) FROM "
            "(SELECT count(*) AS n FROM raw GROUP BY customer_id, date_raw, amount_raw, margin_raw "
            "HAVING count(*) > 1)"
        ).fetchall()[0][0]
    )
    return notes


def _raw_of(role: str) -> str:
    return {"customer_id": "customer_id", "date": "date_raw", "amount": "amount_raw",
            "margin": "margin_raw"}[role]


def load_accounts(
    path: str | Path | pd.DataFrame, *, id_column: str = "customer_id", label: str | None = None
) -> pd.DataFrame:
    """Read an account attribute table, one row per account.

    Columns whose every non-blank value parses as a number become floats; the others
    become categoricals (LightGBM uses both natively).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``customer_id`` (string), one column per attribute.

    Raises
    ------
    InputError
        Missing id column, blank or duplicated ids, unreadable file.
    """
    con = duckdb.connect()
    name = _attach_source(con, path, label)
    found = _source_columns(con)
    if id_column not in found:
        raise InputError(
            f"{name}: column {id_column!r} is missing; found columns: {', '.join(map(repr, found))}"
        )
    frame = con.execute(
        "SELECT * REPLACE (trim(CAST(" + _quoted(id_column) + " AS VARCHAR)) AS "
        + _quoted(id_column) + ") FROM src"
    ).df()
    ids = frame[id_column]
    if ids.isna().any() or (ids == "").any():
        raise InputError(f"{name}: column {id_column!r}: blank customer id in {int((ids.isna() | (ids == '')).sum())} row(s)")
    dup = ids[ids.duplicated()]
    if len(dup):
        raise InputError(
            f"{name}: column {id_column!r}: duplicated customer id {describe_value(dup.iloc[0])} "
            f"({len(dup)} duplicate row(s)); the account table needs one row per account"
        )
    frame = frame.set_index(id_column)
    frame.index = frame.index.astype(str)
    frame.index.name = "customer_id"
    return frame.apply(_typed_attribute)


def _typed_attribute(column: pd.Series) -> pd.Series:
    """Numeric if every non-blank value is a number, else a categorical."""
    text = column.astype("string").str.strip().replace("", pd.NA)
    numbers = pd.to_numeric(text, errors="coerce")
    if numbers.notna().sum() == text.notna().sum():
        return numbers.astype(float)
    return text.astype("category")


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write CSV or Parquet (by extension) atomically: temp file, then rename.

    A run killed midway leaves the previous file intact and no partial one.

    Raises
    ------
    InputError
        Unsupported extension, or a folder that does not exist or cannot be written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise InputError(f"{path}: output must end in .csv or .parquet, got {suffix or '(none)'!r}")
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a file name")
    if not folder.is_dir():
        raise InputError(f"{path}: folder {str(folder)!r} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise InputError(f"{path}: cannot write to folder {str(folder)!r} ({exc.strerror})") from None
    os.close(fd)
    try:
        if suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
