"""Per-account feature and label frames for models and notebooks.

The features are one SQL query (:mod:`keyltv.features.definitions`); this module runs
it into pandas at one or several cutoffs, joins account attributes (a date as its days
before each cutoff, see :mod:`keyltv.features.attributes`), and computes the labels:
value, orders and profit in the horizon after a cutoff.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

from keyltv.data.schema import InputError, as_date, as_horizon
from keyltv.data.transactions import TransactionLog
from keyltv.features.attributes import ATTRIBUTE_PREFIX, with_days_before
from keyltv.features.definitions import feature_sql

_LABELS_SQL = """
SELECT customer_id, sum(amount) AS value, count(*) FILTER (WHERE amount > 0) AS orders,
       sum(margin) AS profit
FROM daily WHERE day >= $as_of AND day < $end
GROUP BY customer_id
"""


def account_features(log: TransactionLog, as_of: date, horizon_days: int) -> pd.DataFrame:
    """One row of features per account with any transaction strictly before ``as_of``.

    Parameters
    ----------
    log : TransactionLog
        Validated log.
    as_of : datetime.date
        Cut date; nothing on or after it is read. Also ``"YYYY-MM-DD"`` or a datetime
        without time zone, whose time of day is dropped (see
        :func:`~keyltv.data.schema.as_date`).
    horizon_days : int
        Prediction horizon; sets the trailing and previous value windows.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``customer_id`` (sorted), columns :data:`FEATURE_COLUMNS`.
    """
    _require_log(log)
    as_of, horizon_days = as_date(as_of), as_horizon(horizon_days)
    frame = log.con.execute(feature_sql(), {"as_of": as_of, "h": horizon_days}).df()
    frame = frame.set_index("customer_id")
    frame.index = frame.index.astype(str)
    return frame.astype(float)  # DOUBLE arrives as float64; this only pins the promise


def _require_log(log: object) -> None:
    """TypeError unless ``log`` is a loaded log (a raw frame failed on ``.con``)."""
    if not isinstance(log, TransactionLog):
        raise TypeError(f"expected a TransactionLog, got {type(log).__name__}; load the "
                        "transactions first: keyltv.data.transactions.load_transactions(frame)")


# Per account, over its order days before the cutoff that carry a margin: the days, their
# value and the value-weighted first and second moments of the day's margin rate. Rates
# are clipped to [-1, 1]: a day whose margin exceeds its amount (a credit or a
# mis-keyed cost) would otherwise dominate the second moment. Each row's products are
# rounded to DECIMAL before summing, as in the feature query, so that the sums (and the
# model trained on them) are the same on every run.
_MARGIN_DAYS_SQL = """
SELECT customer_id, count(*) AS days,
       CAST(sum(amount) AS DOUBLE) AS weight,
       CAST(sum(CAST(amount * rate AS DECIMAL(38, 12))) AS DOUBLE) AS margin,
       CAST(sum(CAST(amount * rate * rate AS DECIMAL(38, 12))) AS DOUBLE) AS margin_sq
FROM (SELECT customer_id, amount,
             least(greatest(CAST(margin AS DOUBLE) / CAST(amount AS DOUBLE), -1.0), 1.0) AS rate
      FROM daily WHERE day < $as_of AND amount > 0 AND margin IS NOT NULL)
GROUP BY customer_id
ORDER BY customer_id
"""


def margin_day_moments(log: TransactionLog, as_of: date) -> pd.DataFrame:
    """Moments of each account's daily margin rate before ``as_of`` (value-weighted).

    The inputs of a credibility estimate of how far an account's own margin rate can be
    trusted (:func:`keyltv.models.bundle.margin_credibility`): how much the rate varies
    from day to day within accounts, against how much it differs between accounts.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``customer_id``; columns ``days`` (order days with a margin),
        ``weight`` (their value), ``margin`` (sum of value x rate) and ``margin_sq``
        (sum of value x rate squared), the rate clipped to [-1, 1]. Empty for a log
        without margins.
    """
    frame = log.con.execute(_MARGIN_DAYS_SQL, {"as_of": as_date(as_of)}).df()
    frame = frame.set_index("customer_id")
    frame.index = frame.index.astype(str)
    return frame.astype(float)


# Over the accounts with a line before $year_ago (those a scoring then would have
# scored): their value in the horizon after that day and in the one before it.
_YEAR_AGO_SQL = """
SELECT CAST(COALESCE(sum(amount) FILTER (WHERE day >= $year_ago), 0) AS DOUBLE),
       CAST(COALESCE(sum(amount) FILTER (WHERE day < $year_ago), 0) AS DOUBLE)
FROM daily
WHERE day >= $start AND day < $end
  AND customer_id IN (SELECT customer_id FROM daily WHERE day < $year_ago)
"""


def seasonal_contrast(log: TransactionLog, as_of: date, horizon_days: int
                      ) -> tuple[float, float] | None:
    """What the accounts on the books a year before ``as_of`` did around that day.

    Their value in ``[as_of - 365, as_of - 365 + horizon)`` and in the ``horizon`` days
    before it: the ratio of the two is what a prediction made a year ago had to reach,
    season, growth and churn included. A model that extrapolates the trailing horizon,
    or a stationary rate, cannot know the season (an audit on a wholesale log with
    Christmas peaks found every model at 0.51-0.68x the next half year where it held the
    peak); scoring compares this ratio with its own and says so when they part (see
    :func:`keyltv.workflows.score_job.season_warning`). Accounts first seen after that day are
    left out, as scoring leaves out accounts first seen after ``as_of``.

    Returns
    -------
    tuple of float or None
        ``(after, before)``; None for a horizon of a year or more (it then holds every
        season) or a log that does not reach back ``365 + horizon_days`` days.
    """
    as_of, horizon_days = as_date(as_of), as_horizon(horizon_days)
    year_ago = as_of - timedelta(days=365)
    start = year_ago - timedelta(days=horizon_days)
    if horizon_days >= 365 or log.first_date > start:
        return None
    after, before = log.con.execute(_YEAR_AGO_SQL, {
        "year_ago": year_ago, "start": start,
        "end": year_ago + timedelta(days=horizon_days)}).fetchone()
    return float(after), float(before)


def year_ago_ratio(log: TransactionLog, as_of: date, horizon_days: int) -> float | None:
    """:func:`seasonal_contrast` as one ratio (after / before); None where it has none.

    The comparison that scoring's season note and ``keyltv evaluate`` both print.
    """
    contrast = seasonal_contrast(log, as_of, horizon_days)
    if contrast is None or contrast[1] <= 0:
        return None
    return contrast[0] / contrast[1]


def future_values(
    log: TransactionLog, as_of: date, horizon_days: int, index: pd.Index
) -> pd.DataFrame:
    """Realized value, orders and profit in ``[as_of, as_of + horizon_days)``.

    Parameters
    ----------
    index : pandas.Index
        Accounts to return (those scored at ``as_of``), as text ids like the log's;
        absent accounts get zeros, and accounts first seen inside the window are left
        out (they were not scoreable).

    Returns
    -------
    pandas.DataFrame
        Columns ``value``, ``orders``, ``profit`` (NaN without margins), one row per
        account of ``index``.

    Raises
    ------
    InputError
        When ``index`` holds ids that are not text: no account would match, and every
        label would be a silent zero (ids read back from a file as numbers).
    """
    _require_text_ids(index, "future_values: index")
    as_of = as_date(as_of)
    end = as_of + timedelta(days=as_horizon(horizon_days))
    frame = log.con.execute(_LABELS_SQL, {"as_of": as_of, "end": end}).df()
    frame = frame.set_index("customer_id")
    frame.index = frame.index.astype(str)
    out = frame.reindex(index).astype(float)
    out[["value", "orders"]] = out[["value", "orders"]].fillna(0.0)
    if log.has_margin:
        out["profit"] = out["profit"].fillna(0.0)
    return out


def training_cutoffs(
    log: TransactionLog, as_of: date, horizon_days: int, n_cutoffs: int, step_days: int,
    min_feature_days: int,
) -> list[date]:
    """Cutoffs ``as_of - horizon - k * step`` whose history and full label window fit.

    Raises
    ------
    InputError
        If not even one cutoff has ``min_feature_days`` of history before it.
    """
    first = as_of - timedelta(days=horizon_days)
    cutoffs = [first - timedelta(days=k * step_days) for k in range(n_cutoffs)]
    usable = [c for c in cutoffs if (c - log.first_date).days >= min_feature_days]
    if not usable:
        raise InputError(
            f"{log.source}: history from {log.first_date} to {as_of} is too short to train on "
            f"a {horizon_days}-day horizon: needs {horizon_days + min_feature_days} days "
            f"(training.min_feature_days {min_feature_days} of features before a cutoff), "
            f"has {(as_of - log.first_date).days}"
        )
    return usable


def training_frame(
    log: TransactionLog, cutoffs: list[date], horizon_days: int, label_days: int | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stack features and labels over several cutoffs (one row per account and cutoff).

    Parameters
    ----------
    cutoffs : list of datetime.date
        Cut dates; features before each, labels after it.
    horizon_days : int
        Horizon the features are defined for (trailing and previous windows).
    label_days : int, optional
        Length of the label window when it must be shorter than the horizon (short
        histories); defaults to ``horizon_days``. Labels are not rescaled here.

    Returns
    -------
    X : pandas.DataFrame
        Features with a ``cutoff`` column (datetime64) and ``customer_id`` index.
    y : pandas.DataFrame
        Labels (``value``, ``orders``, ``profit``) aligned with ``X``.
    """
    X, y, _ = sampled_training_frame(log, cutoffs, horizon_days, label_days)
    return X, y


def sampled_training_frame(
    log: TransactionLog, cutoffs: list[date], horizon_days: int, label_days: int | None = None,
    *, max_rows: int | None = None, seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """:func:`training_frame` with at most ``max_rows`` rows in all.

    Each cutoff keeps a seeded uniform sample of at most ``max_rows / len(cutoffs)``
    accounts, drawn as soon as its features exist: sampling the stacked frame instead
    held every cutoff's full frame at once (1.5 GB of the peak at a million accounts).

    Returns
    -------
    X, y : pandas.DataFrame
        As :func:`training_frame`.
    sampled_out : int
        Rows left out by the cap.
    """
    if isinstance(cutoffs, (str, date)):  # a string was read character by character
        raise TypeError(f"cutoffs must be a list of dates, got one {type(cutoffs).__name__} "
                        f"({cutoffs!r}); pass [{cutoffs!r}]")
    per_cutoff = None if max_rows is None else max(1, -(-max_rows // len(cutoffs)))
    rng = np.random.default_rng(seed)
    xs, ys, sampled_out = [], [], 0
    for cutoff in cutoffs:
        features = account_features(log, cutoff, horizon_days)
        if per_cutoff is not None and len(features) > per_cutoff:
            keep = np.sort(rng.choice(len(features), size=per_cutoff, replace=False))
            sampled_out += len(features) - per_cutoff
            features = features.iloc[keep]
        xs.append(features.assign(cutoff=pd.Timestamp(cutoff)))
        ys.append(future_values(log, cutoff, label_days or horizon_days, features.index))
    return pd.concat(xs), pd.concat(ys), sampled_out


def with_attributes(features: pd.DataFrame, accounts: pd.DataFrame | None,
                    as_of: date | None = None) -> pd.DataFrame:
    """Join account attributes (prefixed ``attr_``) onto a feature frame.

    Accounts missing from the attribute table get missing values, which LightGBM
    treats as their own branch; attribute rows without transactions are not added.
    ``accounts`` is indexed by ``customer_id`` (as :func:`keyltv.data.accounts.load_accounts`
    returns it) or has a ``customer_id`` column. A date attribute becomes its days before
    each row's ``cutoff`` (stacked training rows), or else before ``as_of``, named
    ``attr_<column>_days_before`` (see :func:`keyltv.features.attributes.days_before`).

    Raises
    ------
    InputError
        When the table's ids are not text, as the log's are: every attribute would be
        missing (a table indexed by row numbers, or ids read as numbers).
    ValueError
        A date attribute with neither a ``cutoff`` column nor ``as_of``.
    """
    if accounts is not None and "customer_id" in accounts.columns:
        accounts = accounts.set_index("customer_id")
    if accounts is None or accounts.shape[1] == 0:
        return features
    _require_text_ids(accounts.index, "account table: its index",
                      "index it by customer_id, or give it a customer_id column, with the ids "
                      "as text")
    attrs = accounts.add_prefix(ATTRIBUTE_PREFIX)
    joined = features.join(attrs, how="left")
    # join() turns categoricals with missing rows into object in some pandas versions.
    for column in attrs.columns:
        if isinstance(attrs[column].dtype, pd.CategoricalDtype):
            joined[column] = joined[column].astype(attrs[column].dtype)
    return with_days_before(joined, as_date(as_of) if as_of is not None else None,
                            accounts.attrs.get("source", "account table"))


def _require_text_ids(index: pd.Index, what: str, advice: str = "pass the ids as text") -> None:
    """Raise an InputError unless ``index`` holds text ids, as the log's are."""
    kind = pd.api.types.infer_dtype(index, skipna=True)
    if len(index) and kind not in ("string", "empty"):
        raise InputError(f"{what} holds {kind} values such as {index[:1].tolist()[0]!r}, not "
                         f"the log's account ids (text such as '00042'); {advice}")
