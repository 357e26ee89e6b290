"""Write outputs atomically: tables, query results written by DuckDB, and text files.

A run killed at any point leaves the previous file intact and no partial one (see
:func:`write_atomic`); :func:`check_writable` fails before any expensive work.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import duckdb

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
