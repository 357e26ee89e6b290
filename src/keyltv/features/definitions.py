"""The per-account feature query, defined once in SQL.

The same query serves training cutoffs and scoring, so a model never sees features
computed differently from the ones it was trained on. Every feature, the ratios
included, is an expression of that one query, and nothing is computed afterwards in
pandas: a port to another engine (Spark SQL, for logs that outgrow one machine)
translates a single query. It is plain SQL over the daily table (``FILTER``
aggregates; the gaps between orders come from the table's ``previous_order_day``,
found once per log by a window in :mod:`keyltv.data.transactions`); DuckDB's ``date_diff`` and
its ``$name`` parameters are the spellings such a port would change
(``tests/features/test_spark_sql.py``). Divisions of money and weights are written in
DOUBLE: Spark SQL divides DECIMALs (and ``age / 90.0``) in DECIMAL, to 6 decimals.
Days are integers counted back from the cutoff: ``age = as_of - day`` (so ``age >= 1``
for every day used).

Every sum is exact (DECIMAL or integer; weights are rounded to DECIMAL per row before
summing), so the table is the same bit for bit on every run: DuckDB sums in parallel,
and floating-point sums of per-thread parts depend on which thread read which rows.

An *order* is a day with positive net amount (see :mod:`keyltv.data.transactions`). Lifetimes'
conventions are kept for the probabilistic inputs: ``frequency`` = repeat order days,
``recency`` = days between first and last order, ``T`` = days since the first order.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from keyltv.data.outputs import copy_query
from keyltv.data.schema import as_date, as_horizon
from keyltv.data.transactions import TransactionLog

WINDOWS = (30, 90, 180, 365)
# Time constants (days) of the exponentially weighted value: recent value counts most.
EWM_DAYS = (90, 180, 365)
# Windows (days, among WINDOWS) whose orders are also compared with the account's
# long-run order rate (``rhythm_<w>d``).
RHYTHM_DAYS = (90, 365)

_FEATURES_SQL = """
WITH d AS (
    SELECT customer_id, day, amount, margin, returns,
           date_diff('day', day, $as_of) AS age,
           year($as_of) * 12 + month($as_of) - (year(day) * 12 + month(day)) AS months_back,
           date_diff('day', previous_order_day, $as_of) - date_diff('day', day, $as_of) AS gap
    FROM daily WHERE day < $as_of
),
agg AS (
    -- One pass over the days: the order aggregates are FILTERed to orders (amount > 0)
    -- rather than grouped apart and joined: with `memory_limit: 300MB` that join ran out of
    -- memory at 20M lines in 3 of 4 runs (58ab0dc), and this passed 3 of 3. They are
    -- NULL for an account without orders, as a join would have left them.
    SELECT customer_id,
           NULLIF(count(*) FILTER (WHERE amount > 0), 0) AS orders_total,
           max(age) FILTER (WHERE amount > 0) AS first_order_age,
           min(age) FILTER (WHERE amount > 0) AS last_order_age,
           -- Population SD of the integer gaps from exact integer sums; stddev_pop's
           -- floating-point merge of per-thread states is not deterministic. (``gap`` is
           -- NULL on every day that is not an order.)
           sqrt(CAST(count(gap) * sum(gap * gap) - sum(gap) * sum(gap) AS DOUBLE))
               / NULLIF(count(gap), 0) AS gap_std,
           avg(amount) FILTER (WHERE gap IS NOT NULL) AS repeat_order_value,
           avg(amount) FILTER (WHERE amount > 0) AS avg_order_value,
           avg(age) FILTER (WHERE amount > 0) AS order_age_mean,
           avg(age) FILTER (WHERE amount > 0 AND age <= 730) AS order_age_mean_730d,
           sum(CAST(exp(-CAST(age AS DOUBLE) / 180) AS DECIMAL(38, 12)))
               FILTER (WHERE amount > 0) AS ewm_orders_180d,
           max(age) AS tenure_days, min(age) AS days_since_last_activity,
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
       COALESCE(a.orders_total - 1, 0) AS frequency,
       COALESCE(a.first_order_age - a.last_order_age, 0) AS recency,
       COALESCE(a.first_order_age, a.tenure_days) AS T,
       COALESCE(a.repeat_order_value, 0) AS repeat_order_value,
       a.tenure_days,
       COALESCE(a.orders_total, 0) AS orders_total,
       a.value_total,
       COALESCE(a.avg_order_value, 0) AS avg_order_value,
       COALESCE(a.last_order_age, a.tenure_days) AS days_since_last_order,
       a.days_since_last_activity,
       {window_columns},
       a.trailing_value, a.previous_value, a.value_same_window_last_year, a.active_months_365,
       a.value_age_mean, a.value_age_mean_730d, a.order_age_mean, a.order_age_mean_730d,
       {ewm_columns}, COALESCE(a.ewm_orders_180d, 0) AS ewm_orders_180d,
       CASE WHEN a.orders_total > 1
            THEN (a.first_order_age - a.last_order_age) / (a.orders_total - 1) END AS mean_gap_days,
       CASE WHEN a.orders_total > 2 AND a.first_order_age > a.last_order_age
            THEN a.gap_std * (a.orders_total - 1) / (a.first_order_age - a.last_order_age)
            END AS gap_cv,
       CASE WHEN a.gross_total > 0 THEN CAST(a.returns_total AS DOUBLE) / a.gross_total
            ELSE 0.0 END AS return_share,
       CASE WHEN a.value_total > 0 THEN CAST(a.margin_total AS DOUBLE) / a.value_total END AS margin_rate
FROM agg a
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
    # Orders in the last 90 (365) days relative to the account's long-run order rate.
    # The year's is read by the event classifiers only (see
    # keyltv.models.gbm.EVENT_ONLY_FEATURES): with the two counts it is made of already
    # among their inputs, the ratio still raised their growth AUC.
    **{f"rhythm_{w}d": f"orders_{w}d / NULLIF(orders_total * {w}.0 / greatest(tenure_days, {w}.0), 0)"
       for w in RHYTHM_DAYS},
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


def feature_sql() -> str:
    """The feature query; parameters ``$as_of`` (date) and ``$h`` (horizon days)."""
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
    # The power is taken only within the year: engines compute an aggregate's argument
    # before its FILTER, and 2^63 (a line 63 months back) overflowed BIGINT.
    active_months = ("COALESCE(bit_count(bit_or(CAST(pow(2, CASE WHEN age <= 365 THEN "
                     "months_back END) AS BIGINT)) FILTER (WHERE age <= 365)), 0)")
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


def write_account_features(log: TransactionLog, as_of: date, horizon_days: int,
                           path: str | Path) -> int:
    """Write the feature table (``customer_id`` a column) from DuckDB itself.

    The table is :func:`keyltv.features.accounts.account_features`'s, with no attributes.

    DuckDB writes the CSV or Parquet file (by suffix) straight from the query, with no
    pandas frame or Arrow copy of it: with ``memory_limit: 300MB`` the peak of
    ``keyltv features`` on 20M lines fell from 1,079 MB to 539 MB (``bench-speed``).
    Needs :func:`keyltv.data.outputs.can_copy_query`.

    Returns
    -------
    int
        Accounts written.
    """
    params = {"as_of": as_date(as_of), "h": as_horizon(horizon_days)}
    return copy_query(log.con, feature_sql(), params, path)


FEATURE_COLUMNS = [
    "frequency", "recency", "T", "repeat_order_value", "tenure_days", "orders_total",
    "value_total", "avg_order_value", "days_since_last_order", "days_since_last_activity",
    *[f"{kind}_{w}d" for w in WINDOWS for kind in ("value", "orders")],
    "trailing_value", "previous_value", "value_same_window_last_year", "active_months_365",
    "mean_gap_days", "gap_cv", "return_share", "margin_rate",
    "recency_ratio", *[f"rhythm_{w}d" for w in RHYTHM_DAYS], "trend", "history_coverage",
    "value_centroid_ratio", "order_centroid_ratio", "value_centroid_ratio_730d",
    "order_centroid_ratio_730d", *[f"ewm_value_{d}d" for d in EWM_DAYS], "ewm_orders_180d",
]
