"""Expose a transaction or account source to DuckDB as the view ``src``, strictly.

A source is one file, a folder of part files, a glob or an in-memory frame; CSV files
(plain or gzipped) are read with every column as text, Parquet files as stored. DuckDB's
errors about a file's content become one-line input errors that name the file and the
line.

Why the CSV header is read here and not sniffed by DuckDB: on hand-exported files the
sniffer can pick the wrong delimiter or treat the header as data when one row is
ragged, and then rows go missing without an error. keyltv reads the header line
itself, picks the delimiter from it, and has DuckDB parse strictly with those columns,
so a ragged row, a stray quote or a non-UTF-8 byte stops the job with its line number.
"""

from __future__ import annotations

import csv
import glob
import gzip
import os
import re
import secrets
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import duckdb

from keyltv.data.schema import InputError, describe_value
from keyltv.data.schema import sql_literal as _literal

CSV_SUFFIXES = (".csv", ".txt", ".tsv")
PARQUET_SUFFIXES = (".parquet", ".pq")
# A CSV file may be gzipped (log.csv.gz): DuckDB decompresses it by this suffix and the
# header is read through Python's gzip. Not .zst: DuckDB reads it without an extension,
# but Python 3.11's standard library has no zstd to read the header with.
GZIP_SUFFIX = ".gz"
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK_BYTES = 1 << 20
DELIMITERS = (",", ";", "\t", "|")
_MAX_HEADER_BYTES = 1 << 20


def connect_duckdb(memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
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


def attach_source(
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
    with read_errors(name):
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
        with read_errors(str(path)):
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
    """``csv`` or ``parquet`` by suffix (``.csv.gz`` is CSV); any other file is refused."""
    suffix = _format_suffix(path)
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in PARQUET_SUFFIXES and not _is_gzipped(path):
        return "parquet"
    where = name if str(path) == name else f"{name}: {path}"
    shown = "".join(path.suffixes[-2:]).lower() if _is_gzipped(path) else suffix
    allowed = (*CSV_SUFFIXES, *(s + GZIP_SUFFIX for s in CSV_SUFFIXES), *PARQUET_SUFFIXES)
    raise InputError(
        f"{where}: unsupported file type {shown or '(none)'!r}; use one of {', '.join(allowed)}"
    )


def _is_gzipped(path: Path) -> bool:
    """Whether the file's name says gzip (``.gz``), as DuckDB decides it."""
    return path.suffix.lower() == GZIP_SUFFIX


def _format_suffix(path: Path) -> str:
    """The suffix that names the format, lower case: ``.csv`` for ``log.CSV.gz`` too."""
    return Path(path.stem).suffix.lower() if _is_gzipped(path) else path.suffix.lower()


def _csv_reader(files: list[Path], name: str, encoding: str = "utf-8") -> tuple[str, list[str]]:
    """Build a strict ``read_csv`` call (every column as text); list duplicated names.

    Several files must share the first one's delimiter and header.
    """
    if encoding not in ENCODINGS:
        raise InputError(f"{name}: encoding {encoding!r}: expected one of "
                         f"{', '.join(map(repr, ENCODINGS))}")
    for path in files:
        if _is_gzipped(path):
            _check_gzip(path, str(path))
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
    """Delimiter and column names from the first line of a CSV file (gzipped or not)."""
    with _gzip_errors(name), _open_csv(path) as handle:
        raw = handle.readline(_MAX_HEADER_BYTES)
    if not raw:
        raise InputError(f"{name}: file is empty (expected a header and transaction rows)")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError(f"{name}: cannot read file: UTF-16 text; re-export the file as UTF-8")
    if raw.startswith(_GZIP_MAGIC):
        raise InputError(f"{name}: cannot read file: gzip-compressed data; name the file "
                         f"{path.name}{GZIP_SUFFIX} to have it read as such")
    try:
        line = raw.decode("utf-8-sig" if encoding == "utf-8" else encoding).rstrip("\r\n")
    except UnicodeDecodeError:
        raise InputError(f"{name}: cannot read line 1: {_NOT_UTF8}") from None
    if not line.strip():
        raise InputError(f"{name}: line 1 is empty; expected a header with the column names")
    candidates = ("\t",) if _format_suffix(path) == ".tsv" else DELIMITERS
    parsed = {d: next(csv.reader([line], delimiter=d, quotechar='"')) for d in candidates}
    delimiter = max(candidates, key=lambda d: len(parsed[d]))  # ties: the earlier one
    return delimiter, [column.strip() for column in parsed[delimiter]]


def _open_csv(path: Path) -> BinaryIO:
    """The file's bytes, decompressed when its name ends in ``.gz``."""
    return gzip.open(path, "rb") if _is_gzipped(path) else open(path, "rb")


def _check_gzip(path: Path, name: str) -> None:
    """Refuse a gzipped file that is truncated or damaged, reading it to its end.

    DuckDB stops at a truncated stream, but it does not check the CRC-32 of what it
    decompressed: a damaged file whose deflate data still decodes gave other digits
    without an error (a flipped checksum was read as a whole file). Python's gzip
    checks every member's CRC and length. The pass took 0.15-0.18 s on a 1M-line log
    (33 MB of text), against some 3 s for ``keyltv features`` on it.

    Raises
    ------
    InputError
        Naming the file: not gzip data, ends early, or damaged.
    """
    with open(path, "rb") as raw:
        start = raw.read(len(_GZIP_MAGIC))
    if start and start != _GZIP_MAGIC:  # an empty file is refused as empty, by the header
        raise InputError(f"{name}: cannot read file: not gzip data, although the name ends "
                         "in .gz; compress it with gzip or drop the .gz")
    with _gzip_errors(name), gzip.open(path, "rb") as handle:
        while handle.read(_CHUNK_BYTES):
            pass


@contextmanager
def _gzip_errors(name: str) -> Iterator[None]:
    """Turn the errors of reading a gzipped file into one-line input errors."""
    damaged = f"{name}: cannot read file: the gzip data is damaged"
    advice = "copy or export the file again"
    try:
        yield
    except EOFError:  # the stream ends before its end-of-stream marker
        raise InputError(f"{name}: cannot read file: the gzip data ends early (a truncated "
                         f"copy or download?); {advice}") from None
    except gzip.BadGzipFile as exc:  # a bad header, checksum or length
        text = str(exc).lower()
        why = ("its CRC-32 checksum does not match" if "crc" in text else
               "its stored length does not match" if "length" in text else
               "bytes after its end are not gzip" if "not a gzipped file" in text else text)
        raise InputError(f"{damaged} ({why}); {advice}") from None
    except zlib.error as exc:  # a deflate block that cannot be decoded
        why = str(exc).removeprefix("Error -3 while decompressing data: ")
        raise InputError(f"{damaged} ({why}); {advice}") from None


@contextmanager
def read_errors(name: str) -> Iterator[None]:
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


def source_types(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Column -> DuckDB type of the source (``VARCHAR`` for every CSV column)."""
    return dict(con.execute("SELECT column_name, column_type FROM "
                            "(DESCRIBE SELECT * FROM src)").fetchall())


def source_columns(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The source's columns, without the file column of a source of several files."""
    return [c for c in source_types(con) if c != FILE_COLUMN]
