"""Simulate a B2B transaction log with known structure, for tests and benchmarks.

The generative story, one account at a time (all of it vectorised over accounts; the
tables and the draw of each account's parameters are in :mod:`keyltv.data.simulate_params`):

1. **Attributes.** Each account gets a ``size`` (small / medium / large / enterprise,
   with an ``employees`` count inside the size band), an ``industry`` (six values) and
   a ``region`` (four values). Attributes shift the parameters below through
   multipliers, and every parameter also has account-level noise, so attributes are
   informative about value but never determine it.
2. **Acquisition.** About half the accounts are already customers on ``start``; the
   others are acquired at a uniformly random day later on, and ramp up over their
   first months (onboarding).
3. **Order rate and basket.** A base order rate (orders per month, gamma across
   accounts) scaled by size and region, and a basket (order value, lognormal across
   accounts) scaled by size and industry. Together they make value heavy-tailed: the
   top fifth of accounts holds roughly 80 % of the revenue.
4. **Trend.** Each account is growing, stable or declining. The trend is a log-linear
   drift of 15-60 % per year (near zero for stable accounts), split between the
   order rate and the basket, so the future differs from the trailing year in a way
   that recent history partly reveals.
5. **Churn.** A monthly hazard, higher for declining and for small accounts. For a
   declining account the hazard grows as it shrinks, so the fall in orders shows
   before the account is lost; every churner also fades out over its last months.
   After churn there are no more lines.
6. **Seasonality.** An industry-specific yearly cycle on the order rate (retail and
   technology peak in Q4, construction in spring, ...).
7. **Timing.** Orders are a non-homogeneous Poisson process, drawn as Poisson counts
   per calendar month with the intensity at mid-month and uniform days inside the
   month. An order is split into one or more invoice lines (bigger accounts write
   longer invoices); several orders on one day are possible.
8. **Margin and returns.** Each account has a margin rate around its industry's mean
   (5-45 %), and some high-volume "false key accounts" run on a margin under 5 %.
   A small share of lines is returned a few days to weeks later, as a credit line
   for part of the line's amount and margin; some accounts return far more often.

Variants (same story, other parameters):

``"base"``
    four years of history, trend mix 20/60/20 (growing/stable/declining).
``"short_history"``
    the base story over only 15 months, less than two 365-day horizons.
``"no_attributes"``
    the base log (identical transactions for one seed), accounts without attributes.
``"growth_heavy"``
    trend mix 45/40/15.
``"churn_heavy"``
    churn hazards 3.5 times higher and trend mix 15/45/40.

Examples
--------
>>> transactions, accounts = simulate_b2b(200, seed=1)
>>> list(transactions.columns)
['customer_id', 'date', 'amount', 'margin']
>>> list(accounts.columns)
['customer_id', 'industry', 'size', 'region', 'employees']
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from keyltv.data import simulate_params
from keyltv.data.schema import InputError
from keyltv.data.simulate_params import (
    _VARIANT_SPECS,
    DAYS_PER_MONTH,
    DAYS_PER_YEAR,
    FADE_DAYS,
    FADE_FLOOR,
    INDUSTRIES,
    INDUSTRY_PEAK_MONTH,
    INDUSTRY_SEASON_AMPLITUDE,
    ORDER_LOG_MEAN,
    ORDER_LOG_SD,
    RAMP_DAYS,
    REGIONS,
    RETURN_FRACTION,
    SIZE_EXTRA_LINES,
    SIZES,
    VARIANTS,
    _Accounts,
    _cumulative_hazard,
    _draw_accounts,
    _Variant,
)

__all__ = ["VARIANTS", "expected_value", "simulate_b2b"]


def simulate_b2b(
    n_accounts: int = 2000,
    *,
    variant: str = "base",
    start: str = "2021-01-01",
    end: str | None = None,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulate the invoice lines and attributes of B2B key accounts.

    Parameters
    ----------
    n_accounts : int, default 2000
        Number of accounts, at least 1. Accounts acquired late may have no lines.
    variant : str, default "base"
        One of :data:`VARIANTS`; see the module docstring.
    start : str, default "2021-01-01"
        First day of the log.
    end : str, optional
        First day after the log (the log covers ``start <= date < end``). Defaults
        to 4 years after ``start``, or 15 months for ``"short_history"``.
    seed : int, default 0
        Seed of :func:`numpy.random.default_rng`; the same seed gives the same frames.

    Returns
    -------
    transactions : pandas.DataFrame
        ``customer_id`` (str), ``date`` (datetime64[ns], day resolution), ``amount``
        and ``margin`` (float, negative on return lines), one row per invoice line,
        sorted by ``date`` then ``customer_id``.
    accounts : pandas.DataFrame
        ``customer_id``, ``industry``, ``size``, ``region`` (str) and ``employees``
        (int), one row per account; only ``customer_id`` for ``"no_attributes"``.

    Raises
    ------
    ValueError
        If ``n_accounts`` < 1, ``variant`` is unknown or ``end`` is not after ``start``.
    """
    spec = _check_variant(variant)
    _check_n_accounts(n_accounts)
    first, stop = _check_period(start, end, spec.default_months)
    n_days = (stop - first).days

    rng = np.random.default_rng(seed)
    accounts, account, day, order_value = _draw_order_story(rng, n_accounts, n_days, spec, first,
                                                            stop)
    account, day, amount, margin = _draw_lines(rng, accounts, account, day, order_value)
    account, day, amount, margin = _add_returns(rng, accounts, account, day, amount, margin)

    ids = _customer_ids(n_accounts)
    transactions = _transactions_frame(ids, first, account, day, amount, margin)
    return transactions, _accounts_frame(ids, accounts, spec.attributes)


def expected_value(
    n_accounts: int = 2000,
    *,
    as_of: str,
    horizon_days: int,
    variant: str = "base",
    start: str = "2021-01-01",
    end: str | None = None,
    seed: int = 0,
) -> pd.Series:
    """Expected net value of each account over ``[as_of, as_of + horizon_days)``.

    The oracle of a benchmark: it knows every account's latent parameters (rate,
    basket, trend, season, churn hazard, returns) and whether the account is still
    active on ``as_of``, but not when it will churn later, which is what a perfect
    model could know at ``as_of``. The same arguments as :func:`simulate_b2b` give the
    same accounts. Invoice-line rounding (lines of at least 1) is ignored.

    Returns
    -------
    pandas.Series
        Indexed by ``customer_id``, one value per account (zero for accounts gone or
        not yet acquired).
    """
    spec = _check_variant(variant)
    _check_n_accounts(n_accounts)
    first, stop = _check_period(start, end, spec.default_months)
    acc = _draw_accounts(np.random.default_rng(seed), n_accounts, (stop - first).days, spec)
    origin = (_parse_day("as_of", as_of) - first).days
    edges = np.arange(origin, origin + horizon_days + 1)
    mid = (edges[:-1] + edges[1:]) / 2
    # Intensity without the fade before churn: the oracle does not know the churn day.
    unknown_churn = replace(acc, churned=np.zeros(n_accounts, bool),
                            until=np.full(n_accounts, np.iinfo(np.int64).max // 2))
    rate = _intensity(unknown_churn, edges, first.day_of_year - 1)
    basket = _mean_order_value(acc, np.arange(n_accounts)[:, None], mid[None, :])
    months = np.maximum(mid[None, :] - acc.acquired[:, None], 0.0) / DAYS_PER_MONTH
    at_origin = np.maximum(origin - acc.acquired, 0.0)[:, None] / DAYS_PER_MONTH
    survival = np.exp(-(_cumulative_hazard(acc, months) - _cumulative_hazard(acc, at_origin)))
    started = acc.acquired[:, None] <= mid[None, :]
    value = (rate * basket * survival * started).sum(axis=1)
    # A returned line is credited RETURN_FRACTION of its value on average; still active on as_of.
    value *= (1 - np.mean(RETURN_FRACTION) * acc.return_prob) * (acc.until > origin)
    return pd.Series(value, index=pd.Index(_customer_ids(n_accounts), name="customer_id"))


def _check_variant(variant: str) -> _Variant:
    if variant not in _VARIANT_SPECS:
        raise InputError(f"variant={variant!r} is unknown; allowed: {', '.join(VARIANTS)}")
    return _VARIANT_SPECS[variant]


def _check_n_accounts(n_accounts: int) -> None:
    if isinstance(n_accounts, bool) or not isinstance(n_accounts, (int, np.integer)):
        raise InputError(f"n_accounts={n_accounts!r} must be an integer >= 1")
    if n_accounts < 1:
        raise InputError(f"n_accounts={n_accounts!r} must be >= 1")


def _check_period(
    start: str, end: str | None, default_months: int
) -> tuple[pd.Timestamp, pd.Timestamp]:
    first = _parse_day("start", start)
    if end is None:
        return first, first + pd.DateOffset(months=default_months)
    stop = _parse_day("end", end)
    if stop <= first:
        raise InputError(f"end={end!r} must be after start={start!r}")
    return first, stop


def _parse_day(name: str, value: str) -> pd.Timestamp:
    try:
        day = pd.Timestamp(value)
    except (TypeError, ValueError) as error:
        raise InputError(f"{name}={value!r} is not a date") from error
    if day is pd.NaT:
        raise InputError(f"{name}={value!r} is not a date")
    if day.tz is not None:
        raise InputError(f"{name}={value!r} must have no time zone")
    return day.normalize()


def _month_edges(first: pd.Timestamp, stop: pd.Timestamp) -> np.ndarray:
    """Day offsets of ``start``, each month start in between, and ``end``."""
    month_starts = pd.date_range(first, stop, freq="MS")
    days = (month_starts - first).days.to_numpy()
    return np.unique(np.concatenate([[0], days, [(stop - first).days]]))


def _draw_orders(
    rng: np.random.Generator, acc: _Accounts, edges: np.ndarray, start_day_of_year: int
) -> tuple[np.ndarray, np.ndarray]:
    """Poisson order counts per account and month, spread uniformly over active days."""
    lo = np.maximum(acc.acquired[:, None], edges[None, :-1])
    hi = np.minimum(acc.until[:, None], edges[None, 1:])
    active_days = np.maximum(hi - lo, 0)
    counts = rng.poisson(_intensity(acc, edges, start_day_of_year) * active_days)

    account, month = np.nonzero(counts)
    n_orders = counts[account, month]
    account, month = np.repeat(account, n_orders), np.repeat(month, n_orders)
    lo, span = lo[account, month], active_days[account, month]
    day = lo + np.floor(rng.random(len(account)) * span).astype(np.int64)
    return account, day


def _intensity(acc: _Accounts, edges: np.ndarray, start_day_of_year: int) -> np.ndarray:
    """Orders per day for each account (rows) at the middle of each month (columns)."""
    mid = (edges[:-1] + edges[1:]) / 2
    years = (mid[None, :] - acc.acquired[:, None]) / DAYS_PER_YEAR
    drift = np.exp(acc.drift[:, None] * acc.rate_share[:, None] * np.maximum(years, 0.0))
    since = np.maximum(mid[None, :] - acc.acquired[:, None], 0.0)
    # Accounts on the books at start are past onboarding; new ones start at 30 %.
    ramp = np.where(acc.acquired[:, None] > 0, 1 - 0.7 * np.exp(-since / RAMP_DAYS), 1.0)
    to_churn = (acc.until[:, None] - mid[None, :]) / FADE_DAYS
    fade = np.where(acc.churned[:, None], np.clip(to_churn, FADE_FLOOR, 1.0), 1.0)
    season = _season(acc.industry, mid + start_day_of_year)
    return acc.rate[:, None] * drift * season * ramp * fade


def _season(industry: np.ndarray, day_of_year: np.ndarray) -> np.ndarray:
    """Yearly cosine cycle peaking in the middle of each industry's peak month."""
    month = (day_of_year % DAYS_PER_YEAR) / DAYS_PER_MONTH  # calendar months since 1 January
    peak = (INDUSTRY_PEAK_MONTH[industry] - 0.5)[:, None]
    amplitude = INDUSTRY_SEASON_AMPLITUDE[industry][:, None]
    return 1 + amplitude * np.cos(2 * np.pi * (month[None, :] - peak) / 12)


def _mean_order_value(acc: _Accounts, account: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Mean order value of ``account`` on ``day``: the basket with its share of the drift."""
    years = (day - acc.acquired[account]) / DAYS_PER_YEAR
    return acc.basket[account] * np.exp(acc.drift[account] * (1 - acc.rate_share[account]) * years)


def _draw_order_story(
    rng: np.random.Generator, n_accounts: int, n_days: int, spec: _Variant,
    first: pd.Timestamp, stop: pd.Timestamp,
) -> tuple[_Accounts, np.ndarray, np.ndarray, np.ndarray]:
    """The accounts, then their orders: (accounts, account, day, order value) per order.

    The first draws of :func:`simulate_b2b`, shared with the Bayes reference
    (:mod:`keyltv.data.simulate_reference`), which must see the very orders that the
    log's lines were cut from.
    """
    accounts = _draw_accounts(rng, n_accounts, n_days, spec)
    account, day = _draw_orders(rng, accounts, _month_edges(first, stop), first.day_of_year - 1)
    # Lognormal with mean 1, so the basket parameter is the mean order value.
    noise = rng.lognormal(ORDER_LOG_MEAN, ORDER_LOG_SD, len(day))
    return accounts, account, day, _mean_order_value(accounts, account, day) * noise


def _draw_lines(
    rng: np.random.Generator, acc: _Accounts, account: np.ndarray, day: np.ndarray,
    order_value: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split each order's value over one or more invoice lines with their margins."""
    n_lines = 1 + rng.poisson(SIZE_EXTRA_LINES[acc.size[account]])
    order = np.repeat(np.arange(len(day)), n_lines)
    weight = rng.gamma(2.0, 1.0, len(order))
    share = weight / np.bincount(order, weights=weight, minlength=len(day))[order]
    amount = np.maximum(order_value[order] * share, 1.0)
    line_margin = acc.margin[account[order]] + rng.normal(0.0, 0.03, len(order))
    return account[order], day[order], amount, amount * line_margin


def _add_returns(
    rng: np.random.Generator,
    acc: _Accounts,
    account: np.ndarray,
    day: np.ndarray,
    amount: np.ndarray,
    margin: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Append credit lines for part of some lines, 3-60 days after the original."""
    returned = rng.random(len(day)) < acc.return_prob[account]
    fraction = rng.uniform(*RETURN_FRACTION, len(day))[returned]
    return_day = day[returned] + rng.integers(3, 61, returned.sum())
    # Credit notes that would fall after churn or past the end are left out.
    keep = return_day < acc.until[account[returned]]
    return (
        np.concatenate([account, account[returned][keep]]),
        np.concatenate([day, return_day[keep]]),
        np.concatenate([amount, -fraction[keep] * amount[returned][keep]]),
        np.concatenate([margin, -fraction[keep] * margin[returned][keep]]),
    )


def _customer_ids(n: int) -> np.ndarray:
    """Zero-padded ids ``A00001`` ...; fixed width so string order is number order."""
    width = max(5, len(str(n)))
    return np.char.add("A", np.char.zfill(np.arange(1, n + 1).astype(str), width))


def _transactions_frame(
    ids: np.ndarray,
    first: pd.Timestamp,
    account: np.ndarray,
    day: np.ndarray,
    amount: np.ndarray,
    margin: np.ndarray,
) -> pd.DataFrame:
    # One integer key sorts faster than np.lexsort on two and gives the same order.
    order = np.argsort(day * len(ids) + account, kind="stable")
    account, day = account[order], day[order]
    dates = np.datetime64(first.date(), "D") + day.astype("timedelta64[D]")
    return pd.DataFrame(
        {
            "customer_id": pd.Series(ids).take(account).reset_index(drop=True),
            "date": dates.astype("datetime64[ns]"),
            "amount": np.round(amount[order], 2),
            "margin": np.round(margin[order], 2),
        }
    )


def _accounts_frame(ids: np.ndarray, acc: _Accounts, attributes: bool) -> pd.DataFrame:
    if not attributes:
        return pd.DataFrame({"customer_id": ids})
    return pd.DataFrame(
        {
            "customer_id": ids,
            "industry": np.asarray(INDUSTRIES)[acc.industry],
            "size": np.asarray(SIZES)[acc.size],
            "region": np.asarray(REGIONS)[acc.region],
            "employees": acc.employees,
        }
    )


def __getattr__(name: str) -> object:
    """The story's tables (``SIZE_RATE``, ``TREND_CHURN``...), which were defined here.

    They moved to :mod:`keyltv.data.simulate_params` with the draws that read them;
    user code may still import them from this module.
    """
    if name.isupper() and hasattr(simulate_params, name):
        return getattr(simulate_params, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
