"""Validated inputs of a job: the log, the account table and the ``as_of`` cut.

Every job starts here, and ``keyltv features`` stops here. This module imports neither
the models nor MLflow, so that data preparation starts in about a second.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from keyltv import features
from keyltv.config import Config
from keyltv.data.accounts import load_accounts
from keyltv.data.outputs import can_copy_query, write_table
from keyltv.data.schema import InputError, as_date
from keyltv.data.transactions import TransactionLog, load_transactions

if TYPE_CHECKING:  # pandas only where a frame is made: keyltv features needs none
    import pandas as pd

log = logging.getLogger("keyltv")

# See check_last_day_near_the_rest: why a year, not the horizon (the first day's too).
MAX_LAST_DAY_GAP_DAYS = 365


@dataclass
class Inputs:
    """Validated inputs of a job."""

    log: TransactionLog
    accounts: pd.DataFrame | None
    as_of: date
    notes: dict[str, int] = field(default_factory=dict)


def load_inputs(transactions: str | Path | pd.DataFrame, accounts: str | Path | None,
                config: Config, as_of: date | None, label: str | None = None, *,
                check_last_day: bool = True) -> Inputs:
    """Validate the log (and account table) and fix ``as_of`` (default: day after the last).

    Without ``as_of``, a last day that stands far apart from the rest of the log is
    refused (see :func:`check_last_day_near_the_rest`) unless ``check_last_day`` is
    False: ``evaluate`` cuts at its own ``--cutoff`` and uses no default ``as_of``.
    """
    tx = load_transactions(transactions, columns=config.columns.roles(),
                           date_format=config.date_format,
                           decimal_separator=config.decimal_separator,
                           thousands_separator=config.thousands_separator,
                           encoding=config.encoding, label=label,
                           memory_limit=config.engine.memory_limit,
                           drop_blank_ids=config.drop_blank_ids)
    if as_of is None and check_last_day:
        check_last_day_near_the_rest(tx, config.columns.date)
    check_first_day_near_the_rest(tx, config.columns.date)
    attrs = None
    notes = dict(tx.notes)
    if accounts is not None:
        attrs = load_accounts(accounts, id_column=config.columns.customer_id,
                              encoding=config.encoding,
                              decimal_separator=config.decimal_separator,
                              thousands_separator=config.thousands_separator,
                              text_columns=config.account_text_columns,
                              date_format=config.date_format)
        notes.update(_match_accounts(tx, attrs))
        notes.update(attrs.attrs["notes"])
        for message in attrs.attrs["messages"]:  # which column and marker each count is
            log.warning("%s", message)
    as_of = as_date(as_of) if as_of is not None else tx.last_date + timedelta(days=1)
    if as_of <= tx.first_date:
        raise InputError(f"{tx.source}: --as-of {as_of} is on or before the first transaction "
                         f"({tx.first_date}); nothing to score")
    notes["lines_on_or_after_as_of"] = int(tx.con.execute(
        "SELECT COALESCE(sum(lines), 0) FROM daily WHERE day >= ?", [as_of]).fetchall()[0][0])
    # Accounts whose every line is on or after --as-of: in the log (and perhaps in the
    # account table), but not scored; accounts_without_transactions does not count them.
    first_seen_later = int(tx.con.execute(
        "SELECT count(*) FROM (SELECT customer_id FROM daily GROUP BY customer_id "
        "HAVING min(day) >= ?)", [as_of]).fetchall()[0][0])
    if first_seen_later:
        notes["accounts_first_seen_on_or_after_as_of"] = first_seen_later
    # A late --as-of makes every account look asleep: count the empty days it adds.
    notes["days_after_last_transaction"] = max((as_of - tx.last_date).days - 1, 0)
    files = f"{tx.n_files} files, " if tx.n_files > 1 else ""
    log.info("data %s: %s%d lines, %d accounts, %s to %s, fingerprint %s", tx.source, files,
             tx.n_lines, tx.n_accounts, tx.first_date, tx.last_date, tx.fingerprint)
    return Inputs(tx, attrs, as_of, notes)


def check_last_day_near_the_rest(tx: TransactionLog, column: str = "date") -> None:
    """Refuse a log whose last day lies more than a year after the day before it.

    That last day would set the default ``as_of``, and one mistyped year (2032-12-31
    for 2023-12-31) then scores every account as asleep for years, or puts the backtest
    in a window with one line in it (audit 22). The limit is a fixed 365 days rather than the
    horizon: a horizon may be as short as a month (a small log can pause that long over a
    holiday) or as long as ten years (a nine-year typo would pass), while a whole year in
    which no account has a single line, followed by one day, is no business pattern.

    Raises
    ------
    InputError
        Naming the file, the date column (``column``, as the user's file names it), the
        last day, its lines and the gap.
    """
    before, lines, gap = _lone_edge_day(tx, tx.last_date, "max(day) FILTER (WHERE day < ?)")
    if gap is None:
        return
    raise InputError(
        f"{tx.source}: column '{column}': value '{tx.last_date}' ({lines}) lies {gap:,} days "
        f"after every other line (the latest before it is {before}) and would set the as-of "
        "date; fix the date or pass --as-of")


def check_first_day_near_the_rest(tx: TransactionLog, column: str = "date") -> None:
    """Refuse a log whose first day lies more than a year before the day after it.

    The mirror of :func:`check_last_day_near_the_rest`: one mistyped year (1921-01-01
    for 2021-01-01) made its account a customer of a hundred years, whose expected
    orders fell from 25.5 to 0.9 with nothing said (audit 28), and it moves the log's
    first day, from which the training cutoffs and the history checks count. A whole
    year without a single line after one day is no business pattern either; unlike
    the last day, no option sets it aside: the line is before every cutoff.

    Raises
    ------
    InputError
        Naming the file, the date column, the first day, its lines and the gap.
    """
    after, lines, gap = _lone_edge_day(tx, tx.first_date, "min(day) FILTER (WHERE day > ?)")
    if gap is None:
        return
    raise InputError(
        f"{tx.source}: column '{column}': value '{tx.first_date}' ({lines}) lies {gap:,} days "
        f"before every other line (the earliest after it is {after}); fix the date or leave "
        "the line out")


def _lone_edge_day(tx: TransactionLog, edge: date, neighbour_sql: str
                   ) -> tuple[date | None, str, int | None]:
    """The log's nearest other day to its first or last day ``edge``, and how far it is.

    ``neighbour_sql`` is the aggregate that finds that day (``max(day) FILTER (WHERE
    day < ?)`` for the last day). Returns the neighbour, the edge day's lines in words
    (``1 line``, ``2 lines``) and the gap in days when it exceeds
    :data:`MAX_LAST_DAY_GAP_DAYS`, else None.
    """
    neighbour, lines = tx.con.execute(
        f"SELECT {neighbour_sql}, sum(lines) FILTER (WHERE day = ?) FROM daily",
        [edge, edge]).fetchall()[0]
    gap = None if neighbour is None else abs((edge - neighbour).days)
    words = f"{lines} line{'' if lines == 1 else 's'}"
    return neighbour, words, gap if gap is not None and gap > MAX_LAST_DAY_GAP_DAYS else None


def _match_accounts(tx: TransactionLog, attrs: pd.DataFrame) -> dict[str, int]:
    """Count ids on one side only; refuse an account table that matches no account.

    Raises
    ------
    InputError
        When no id of the account table occurs in the log (typically lost leading
        zeros or another id column).
    """
    import pandas as pd

    known = pd.Index(tx.con.execute("SELECT DISTINCT customer_id FROM daily").df()["customer_id"])
    shared = attrs.index.isin(known)
    if not shared.any():
        raise InputError(
            f"{attrs.attrs.get('source', 'account table')}: column 'customer_id': none of its "
            f"{len(attrs)} ids occurs in {tx.source} (e.g. {attrs.index[0]!r} here, "
            f"{known.min()!r} in the log); check leading zeros and the id column"
        )
    return {"accounts_without_transactions": int((~shared).sum()),
            "accounts_without_attributes": int((~known.isin(attrs.index)).sum())}


def ignored_attributes(inputs: Inputs, config: Config) -> dict[str, str]:
    """The id-like columns of the account table that training leaves out, each with why.

    Says so once per column (a ``WARNING`` naming the file, the column and its distinct
    values) and counts them in ``inputs.notes`` (``attribute_columns_ignored_as_ids``):
    the jobs that decide what the models read (``train``, ``evaluate``, ``features``)
    call it once; the models themselves leave the columns out without a word.
    """
    from keyltv.features.attributes import id_like_attributes, ignored_attribute_message

    ignored = id_like_attributes(inputs.accounts, config.account_text_columns)
    if ignored:
        source = inputs.accounts.attrs.get("source", "account table")
        for column, why in ignored.items():
            log.warning("%s", ignored_attribute_message(source, column, why))
        inputs.notes["attribute_columns_ignored_as_ids"] = len(ignored)
    return ignored


def feature_table(inputs: Inputs, config: Config) -> pd.DataFrame:
    """Per-account features at ``as_of`` as the models read them, ``customer_id`` a column.

    The same SQL serves training cutoffs and scoring; no model or tracking store is used.
    Id-like attribute columns are left out, as training leaves them out (and said so:
    see :func:`ignored_attributes`); a date attribute is its days before ``as_of``.
    """
    from keyltv.features.attributes import model_attributes

    ignored_attributes(inputs, config)
    table = features.with_attributes(
        features.account_features(inputs.log, inputs.as_of, config.horizon_days),
        model_attributes(inputs.accounts, config.account_text_columns), inputs.as_of,
    )
    return table.rename_axis("customer_id").reset_index()


def write_feature_table(inputs: Inputs, config: Config, out: str | Path) -> int:
    """Write :func:`feature_table` to ``out`` (CSV or Parquet); return the accounts written.

    Without an account table DuckDB writes the file itself, with no frame in between
    (:func:`~keyltv.features.write_account_features`); the attributes of an account
    table are joined in pandas, as the models see them.
    """
    if inputs.accounts is None and can_copy_query():
        return features.write_account_features(inputs.log, inputs.as_of,
                                               config.horizon_days, out)
    table = feature_table(inputs, config)
    write_table(table, out)
    return len(table)


def require_orders(inputs: Inputs, config: Config) -> None:
    """Refuse a log in which no account ordered before ``as_of``.

    keyltv reads positive amounts as orders and negative ones as returns. A log with no
    positive day, such as an accounting export that signs sales negative, would be
    scored as a book of accounts that never ordered (an audit's negated log got 143
    key accounts from the count models before accounts without orders were zeroed).

    Raises
    ------
    InputError
        Naming the file, the value column(s) and the largest day's net value.
    """
    largest = inputs.log.con.execute("SELECT max(amount) FROM daily WHERE day < ?",
                                     [inputs.as_of]).fetchall()[0][0]
    if largest is not None and largest > 0:
        return
    raise InputError(
        f"{inputs.log.source}: {config.columns.value_label()}: no account has a positive day before "
        f"{inputs.as_of} (the largest day's net value is {float(largest or 0):g}); keyltv reads "
        "positive amounts as orders and negative ones as returns: if the export signs sales "
        "negative, negate the column")
