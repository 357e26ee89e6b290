"""Write outputs atomically: tables, query results written by DuckDB, and text files.

A run killed at any point leaves the previous file intact and no partial one (see
:func:`write_atomic`); :func:`check_writable` fails before any expensive work. In CSV
tables, a text cell that a spreadsheet would run as a formula is written as text (see
:func:`escape_formulas`).
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import duckdb

from keyltv.data.columns import quote_identifier
from keyltv.data.schema import InputError
from keyltv.data.schema import sql_literal as _literal

if TYPE_CHECKING:
    import pandas as pd  # imported where a frame is made (see keyltv.data.transactions)

OUTPUT_SUFFIXES = (".csv", ".parquet")
# Linux's names for this process's open files: how an unnamed temporary file is named
# (linked) once complete, and how DuckDB opens one to write into it.
_OPEN_FILES = "/proc/self/fd"


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

    In a CSV file, text cells that a spreadsheet would run as a formula are escaped
    (:func:`escape_formulas`); Parquet keeps every value as it is (typed, and not opened
    by a spreadsheet).

    Raises
    ------
    InputError
        Unsupported extension, or a folder that does not exist or cannot be written.
    """
    path = check_writable(path)
    if path.suffix.lower() == ".csv":
        escaped = escape_formulas(frame)
        return write_atomic(path, lambda handle: escaped.to_csv(handle, index=False))
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
    beside that name instead). Needs :func:`can_copy_query`. A CSV file's text cells are
    escaped in SQL as :func:`escape_formulas` escapes a frame's.

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
    if fmt == "csv":
        query = _formulas_escaped_sql(con, query, params)
    rows = 0

    def copy(handle: BinaryIO) -> None:
        nonlocal rows
        target = _literal(f"{_OPEN_FILES}/{handle.fileno()}")
        rows = con.execute(f"COPY ({query}) TO {target} (FORMAT {fmt}, USE_TMP_FILE false)",
                           params).fetchall()[0][0]

    write_atomic(path, copy)
    return int(rows)


# OWASP's "CSV injection" advice: a cell that starts with one of these is read by Excel,
# LibreOffice or Google Sheets as a formula (=HYPERLINK(...), @SUM(...), a tab or carriage
# return before one), so a CSV output prefixes such a text cell with a single quote, which
# makes a spreadsheet show it as text. A cell that already starts with quotes before one
# of them gets one more quote, so that reading back (unescape_formulas) takes off exactly
# the one keyltv added: an id written '=1 by someone else comes back as '=1, not =1.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_ESCAPE_PATTERN = r"^'*[=+\-@\t\r]"
_ESCAPED_PATTERN = r"^'+[=+\-@\t\r]"
# A plain number is not escaped: an id -123 or +44, an amount -1.5e3. A sign, ASCII
# digits, at most one decimal point and an exponent hold no letter, reference, function or
# operator between operands, so a spreadsheet can only read the number itself; a quote
# would make it text (a -123 that no longer sorts or sums as a number). Anything more
# (-2+3, -1,5, +44 20 7946) is escaped.
_PLAIN_NUMBER = r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?"


def formula_cells(values: pd.Series) -> pd.Series:
    """Which cells of a column :func:`escape_formulas` prefixes with a quote.

    Only text columns (object, string, category) hold such cells; numbers, booleans and
    dates are written as numbers and dates.
    """
    if values.dtype.kind != "O":  # object, string and category columns are "O"
        return values.notna() & False
    text = values.astype("string")
    starts = text.str.contains(_ESCAPE_PATTERN).fillna(False).astype(bool)
    if not starts.any():  # the usual case: no number test on every cell
        return starts
    return starts & ~text.str.fullmatch(_PLAIN_NUMBER).fillna(False).astype(bool)


def escape_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with each text cell that a spreadsheet would run prefixed with a quote.

    ``=HYPERLINK("http://x","y")`` is written ``'=HYPERLINK("http://x","y")`` and ``-2+3``
    ``'-2+3``; ``-123`` stays (see :data:`FORMULA_STARTS`). :func:`unescape_formulas`
    reverses it exactly. Column names are not escaped: keyltv names its columns itself
    (account attributes as ``attr_NAME``).
    """
    escaped = frame
    for i in range(frame.shape[1]):  # by position (a name may repeat), as arrays (an index may)
        hit = formula_cells(frame.iloc[:, i]).to_numpy()
        if hit.any():
            escaped = frame.copy() if escaped is frame else escaped
            values = frame.iloc[:, i].to_numpy(dtype=object, copy=True)
            values[hit] = ["'" + str(value) for value in values[hit]]
            escaped.isetitem(i, values)
    return escaped


def count_escaped_cells(frame: pd.DataFrame) -> int:
    """How many cells a CSV file of ``frame`` holds escaped (see :func:`escape_formulas`)."""
    return sum(int(formula_cells(frame.iloc[:, i]).sum()) for i in range(frame.shape[1]))


def unescape_formulas(values: pd.Series) -> pd.Series:
    """Take off the quote that :func:`escape_formulas` put before a cell, and no other.

    A quote is taken off only where keyltv puts one: before (more quotes and) one of
    :data:`FORMULA_STARTS`, and not before a plain number, which keyltv never escapes
    (``'-123`` typed by hand stays ``'-123``).
    """
    text = values.astype("string")
    rest = text.str[1:]
    ours = (text.str.contains(_ESCAPED_PATTERN) & ~rest.str.fullmatch(_PLAIN_NUMBER)
            ).fillna(False).to_numpy(dtype=bool)
    if not ours.any():
        return values
    import pandas as pd  # loaded by whoever made ``values``: no cost here

    unescaped = values.to_numpy(dtype=object, copy=True)
    unescaped[ours] = rest.to_numpy(dtype=object)[ours]
    return pd.Series(unescaped, index=values.index, name=values.name)


def _formulas_escaped_sql(con: duckdb.DuckDBPyConnection, query: str,
                          params: Mapping[str, object]) -> str:
    """``query`` with its text cells escaped as :func:`escape_formulas` escapes them."""
    types = con.execute(f"DESCRIBE ({query})", params).fetchall()  # binds, runs nothing
    # Text, and categories: a pandas category reaches DuckDB as an ENUM.
    text = [quote_identifier(column) for column, kind, *_ in types
            if kind == "VARCHAR" or kind.startswith("ENUM(")]
    if not text:
        return query
    escape, number, quote = (_literal(_ESCAPE_PATTERN), _literal(_PLAIN_NUMBER),
                             _literal("'"))
    replaced = ", ".join(
        f"CASE WHEN regexp_matches({t}, {escape}) AND NOT regexp_full_match({t}, {number}) "
        f"THEN {quote} || {t} ELSE {t} END AS {c}"
        for c, t in ((c, f"CAST({c} AS VARCHAR)") for c in text))
    return f"SELECT * REPLACE ({replaced}) FROM ({query})"


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
