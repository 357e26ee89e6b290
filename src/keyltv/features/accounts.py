"""Per-account feature and label tables, defined once in SQL.

The same query serves training cutoffs and scoring, so a model never sees features
computed differently from the ones it was trained on. Every feature, the ratios
included, is an expression of that one query, and nothing is computed afterwards in
pandas: a port to another engine (Spark SQL, for logs that outgrow one machine)
translates a single query. It is plain SQL over the daily table (window functions,
``FILTER`` aggregates); DuckDB's ``date_diff`` and its ``$name`` parameters are the
spellings such a port would change (``tests/features/test_spark_sql.py``). Divisions
of money and weights are written in DOUBLE: Spark SQL divides DECIMALs (and
``age / 90.0``) in DECIMAL, to 6 decimals. Days are integers counted back from the
cutoff: ``age = as_of - day`` (so ``age >= 1`` for every day used).

Every sum is exact (DECIMAL or integer; weights are rounded to DECIMAL per row before
summing), so the table is the same bit for bit on every run: DuckDB sums in parallel,
and floating-point sums of per-thread parts depend on which thread read which rows.

An *order* is a day with positive net amount (see :mod:`keyltv.data.io`). Lifetimes'
conventions are kept for the probabilistic inputs: ``frequency`` = repeat order days,
``recency`` = days between first and last order, ``T`` = days since the first order.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from keyltv.data.io import TransactionLog, copy_query
from keyltv.data.schema import InputError

WINDOWS = (30, 90, 180, 365)
# Time constants (days) of the exponentially weighted value: recent value counts most.
EWM_DAYS = (90, 180, 365)

_FEATURES_SQL = """
WITH d AS (
    SELECT customer_id, day, amount, margin, returns,
           date_diff('day', day, $as_of) AS age,
           year($as_of) * 12 + month($as_of) - (year(day) * 12 + month(day)) AS months_back
    FROM daily WHERE day < $as_of
),
o AS (
    -- Reads daily itself: a CTE read twice is held in memory whole by DuckDB.
    SELECT customer_id, amount, age,
           lag(age) OVER (PARTITION BY customer_id ORDER BY age DESC) - age AS gap
    FROM (SELECT customer_id, amount, date_diff('day', day, $as_of) AS age
          FROM daily WHERE day < $as_of AND amount > 0) AS orders
),
agg_o AS (
    SELECT customer_id, count(*) AS orders_total, max(age) AS first_order_age,
           min(age) AS last_order_age,
           -- Population SD of the integer gaps from exact integer sums; stddev_pop's
           -- floating-point merge of per-thread states is not deterministic.
           sqrt(CAST(count(gap) * sum(gap * gap) - sum(gap) * sum(gap) AS DOUBLE))
               / NULLIF(count(gap), 0) AS gap_std,
           COALESCE(avg(amount) FILTER (WHERE gap IS NOT NULL), 0) AS repeat_order_value,
           avg(amount) AS avg_order_value,
           avg(age) AS order_age_mean,
           avg(age) FILTER (WHERE age <= 730) AS order_age_mean_730d,
           sum(CAST(exp(-CAST(age AS DOUBLE) / 180) AS DECIMAL(38, 12))) AS ewm_orders_180d
    FROM o GROUP BY customer_id
),
agg_d AS (
    SELECT customer_id, max(age) AS tenure_days, min(age) AS days_since_last_activity,
           sum(amount) AS value_total, -sum(returns) AS returns_total,
           sum(amount - returns) AS gross_total, sum(margin) AS margin_total,
           {windows},
           COALESCE(sum(amount) FILTER (WHERE age <= $h), 0) AS trailing_value,
           COALESCE(sum(amount) FILTER (WHERE age > $h AND age <= 2 * $h), 0) AS previous_value,
           COALESCE(sum(amount) FILTER (WHERE age > 365 - $h AND age <= 365), 0)
               AS value_same_window_last_year,
           {active_months} AS active_months_365,
           -- Where in time the value sits (the sufficient statistic of a log-linear
           -- trend of a Poisson rate), and value with exponentially fading weights.
           CAST(sum(amount * age) AS DOUBLE) / NULLIF(sum(amount), 0) AS value_age_mean,
           CAST(sum(amount * age) FILTER (WHERE age <= 730) AS DOUBLE)
               / NULLIF(sum(amount) FILTER (WHERE age <= 730), 0) AS value_age_mean_730d,
           {ewm}
    FROM d GROUP BY customer_id
),
base AS (
SELECT a.customer_id,
       COALESCE(o.orders_total - 1, 0) AS frequency,
       COALESCE(o.first_order_age - o.last_order_age, 0) AS recency,
       COALESCE(o.first_order_age, a.tenure_days) AS T,
       COALESCE(o.repeat_order_value, 0) AS repeat_order_value,
       a.tenure_days,
       COALESCE(o.orders_total, 0) AS orders_total,
       a.value_total,
       COALESCE(o.avg_order_value, 0) AS avg_order_value,
       COALESCE(o.last_order_age, a.tenure_days) AS days_since_last_order,
       a.days_since_last_activity,
       {window_columns},
       a.trailing_value, a.previous_value, a.value_same_window_last_year, a.active_months_365,
       a.value_age_mean, a.value_age_mean_730d, o.order_age_mean, o.order_age_mean_730d,
       {ewm_columns}, COALESCE(o.ewm_orders_180d, 0) AS ewm_orders_180d,
       CASE WHEN o.orders_total > 1
            THEN (o.first_order_age - o.last_order_age) / (o.orders_total - 1) END AS mean_gap_days,
       CASE WHEN o.orders_total > 2 AND o.first_order_age > o.last_order_age
            THEN o.gap_std * (o.orders_total - 1) / (o.first_order_age - o.last_order_age)
            END AS gap_cv,
       CASE WHEN a.gross_total > 0 THEN CAST(a.returns_total AS DOUBLE) / a.gross_total
            ELSE 0.0 END AS return_share,
       CASE WHEN a.value_total > 0 THEN CAST(a.margin_total AS DOUBLE) / a.value_total END AS margin_rate
FROM agg_d a LEFT JOIN agg_o o USING (customer_id)
),
typed AS (SELECT customer_id, {typed} FROM base)
SELECT customer_id, {features}
FROM typed
ORDER BY customer_id
"""

# Rhythm and trend features derived from the aggregates, in DOUBLE arithmetic (NULL, a
# NaN in the frame, where undefined).
_RATIOS = {
    # Recency against the account's own rhythm: 3.0 = three usual gaps without an order.
    "recency_ratio": "days_since_last_order / mean_gap_days",
    # Orders in the last 90 days relative to the account's long-run order rate.
    "rhythm_90d": "orders_90d / NULLIF(orders_total * 90.0 / greatest(tenure_days, 90.0), 0)",
    # Log growth between the last two horizons; +-ln(2) means doubled / halved.
    "trend": "ln(1 + greatest(trailing_value, 0)) - ln(1 + greatest(previous_value, 0))",
    # How much of a full previous horizon the account has existed: new accounts look
    # like decliners-from-zero otherwise.
    "history_coverage": "least(tenure_days / (2.0 * $h), 1.0)",
    # Mean age of value and of orders against the middle of the account's history (of
    # its last two years): 1 for a steady account, below 1 when value moved to recent
    # days (growth), above 1 when it sits in the past (decline).
    "value_centroid_ratio": "value_age_mean / (tenure_days / 2.0)",
    "order_centroid_ratio": "order_age_mean / (tenure_days / 2.0)",
    "value_centroid_ratio_730d": "value_age_mean_730d / (least(tenure_days, 730.0) / 2.0)",
    "order_centroid_ratio_730d": "order_age_mean_730d / (least(tenure_days, 730.0) / 2.0)",
}
# Aggregates of ``base`` that only the ratios read.
_RATIO_INPUTS = ("value_age_mean", "value_age_mean_730d", "order_age_mean",
                 "order_age_mean_730d")

_LABELS_SQL = """
SELECT customer_id, sum(amount) AS value, count(*) FILTER (WHERE amount > 0) AS orders,
       sum(margin) AS profit
FROM daily WHERE day >= $as_of AND day < $end
GROUP BY customer_id
"""


def _feature_sql() -> str:
    windows = ",\n           ".join(
        f"COALESCE(sum(amount) FILTER (WHERE age <= {w}), 0) AS value_{w}d, "
        f"count(*) FILTER (WHERE age <= {w} AND amount > 0) AS orders_{w}d"
        for w in WINDOWS
    )
    columns = ", ".join(f"a.value_{w}d, a.orders_{w}d" for w in WINDOWS)
    # Distinct calendar months with activity in the last 365 days, which touch at most
    # 13 months (months_back 0..12): one bit per month, OR-ed and counted.
    # count(DISTINCT ...) made DuckDB hold the whole cut log in memory and took a third
    # of the query's time; thirteen max(CASE ...) flags cost a sixth of it.
    # 2^k as pow() rather than 1 << k: Spark SQL spells the shift shiftleft().
    active_months = ("COALESCE(bit_count(bit_or(CAST(pow(2, months_back) AS BIGINT))"
                     " FILTER (WHERE age <= 365)), 0)")
    ewm = ",\n           ".join(
        f"sum(CAST(CAST(amount AS DOUBLE) * exp(-CAST(age AS DOUBLE) / {d}) AS DECIMAL(38, 12))) "
        f"AS ewm_value_{d}d" for d in EWM_DAYS
    )
    ewm_columns = ", ".join(f"a.ewm_value_{d}d" for d in EWM_DAYS)
    # Every aggregate as DOUBLE first, so that the ratios are computed as in float64
    # (money sums are exact DECIMALs up to here).
    aggregates = [c for c in FEATURE_COLUMNS if c not in _RATIOS] + list(_RATIO_INPUTS)
    typed = ", ".join(f"CAST({c} AS DOUBLE) AS {c}" for c in aggregates)
    features = ", ".join(f"{_RATIOS[c]} AS {c}" if c in _RATIOS else c for c in FEATURE_COLUMNS)
    return _FEATURES_SQL.format(windows=windows, window_columns=columns,
                                active_months=active_months, ewm=ewm, ewm_columns=ewm_columns,
                                typed=typed, features=features)


def account_features(log: TransactionLog, as_of: date, horizon_days: int) -> pd.DataFrame:
    """One row of features per account with any transaction strictly before ``as_of``.

    Parameters
    ----------
    log : TransactionLog
        Validated log.
    as_of : datetime.date
        Cut date; nothing on or after it is read.
    horizon_days : int
        Prediction horizon; sets the trailing and previous value windows.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``customer_id`` (sorted), columns :data:`FEATURE_COLUMNS`.
    """
    frame = log.con.execute(_feature_sql(), {"as_of": as_of, "h": horizon_days}).df()
    frame = frame.set_index("customer_id")
    frame.index = frame.index.astype(str)
    return frame.astype(float)  # DOUBLE arrives as float64; this only pins the promise


def write_account_features(log: TransactionLog, as_of: date, horizon_days: int,
                           path: str | Path) -> int:
    """Write :func:`account_features`'s table (``customer_id`` a column) from DuckDB itself.

    DuckDB writes the CSV or Parquet file (by suffix) straight from the query, with no
    pandas frame or Arrow copy of it: with ``memory_limit: 300MB`` the peak of
    ``keyltv features`` on 20M lines fell from 1,079 MB to 539 MB (``bench-speed``).
    Needs :func:`keyltv.data.io.can_copy_query`.

    Returns
    -------
    int
        Accounts written.
    """
    return copy_query(log.con, _feature_sql(), {"as_of": as_of, "h": horizon_days}, path)


FEATURE_COLUMNS = [
    "frequency", "recency", "T", "repeat_order_value", "tenure_days", "orders_total",
    "value_total", "avg_order_value", "days_since_last_order", "days_since_last_activity",
    *[f"{kind}_{w}d" for w in WINDOWS for kind in ("value", "orders")],
    "trailing_value", "previous_value", "value_same_window_last_year", "active_months_365",
    "mean_gap_days", "gap_cv", "return_share", "margin_rate",
    "recency_ratio", "rhythm_90d", "trend", "history_coverage",
    "value_centroid_ratio", "order_centroid_ratio", "value_centroid_ratio_730d",
    "order_centroid_ratio_730d", *[f"ewm_value_{d}d" for d in EWM_DAYS], "ewm_orders_180d",
]


def future_values(
    log: TransactionLog, as_of: date, horizon_days: int, index: pd.Index
) -> pd.DataFrame:
    """Realized value, orders and profit in ``[as_of, as_of + horizon_days)``.

    Parameters
    ----------
    index : pandas.Index
        Accounts to return (those scored at ``as_of``); absent accounts get zeros, and
        accounts first seen inside the window are left out (they were not scoreable).

    Returns
    -------
    pandas.DataFrame
        Columns ``value``, ``orders``, ``profit`` (NaN without margins), one row per
        account of ``index``.
    """
    end = as_of + timedelta(days=horizon_days)
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
            f"a {horizon_days}-day horizon: needs {horizon_days + min_feature_days} days, "
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


def with_attributes(features: pd.DataFrame, accounts: pd.DataFrame | None) -> pd.DataFrame:
    """Join account attributes (prefixed ``attr_``) onto a feature frame.

    Accounts missing from the attribute table get missing values, which LightGBM
    treats as their own branch; attribute rows without transactions are not added.
    """
    if accounts is None or accounts.shape[1] == 0:
        return features
    attrs = accounts.add_prefix("attr_")
    joined = features.join(attrs, how="left")
    # join() turns categoricals with missing rows into object in some pandas versions.
    for column in attrs.columns:
        if isinstance(attrs[column].dtype, pd.CategoricalDtype):
            joined[column] = joined[column].astype(attrs[column].dtype)
    return joined
