"""Simulate a B2B transaction log with known structure, for tests and benchmarks.

The generative story, one account at a time (all of it vectorised over accounts):

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

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from keyltv.data.schema import InputError

__all__ = ["VARIANTS", "expected_value", "simulate_b2b"]

VARIANTS = ("base", "short_history", "no_attributes", "growth_heavy", "churn_heavy")

DAYS_PER_MONTH = 365.25 / 12
DAYS_PER_YEAR = 365.25

SIZES = ("small", "medium", "large", "enterprise")
SIZE_SHARE = np.array([0.45, 0.30, 0.18, 0.07])
SIZE_EMPLOYEES = np.array([[10, 50], [50, 250], [250, 1000], [1000, 50_000]])
SIZE_RATE = np.array([0.9, 1.4, 2.2, 3.5])  # orders per month
SIZE_BASKET = np.array([600.0, 1_200.0, 2_400.0, 4_500.0])  # median order value
SIZE_EXTRA_LINES = np.array([0.3, 0.6, 1.0, 1.5])  # mean lines per order beyond the first
SIZE_CHURN = np.array([1.8, 1.0, 0.6, 0.35])
# Thin-margin, high-volume deals are mostly struck with big accounts.
SIZE_FALSE_KEY = np.array([0.02, 0.04, 0.12, 0.15])

INDUSTRIES = ("manufacturing", "retail", "construction", "healthcare", "technology", "wholesale")
INDUSTRY_SHARE = np.array([0.22, 0.20, 0.15, 0.13, 0.12, 0.18])
INDUSTRY_PEAK_MONTH = np.array([3, 11, 5, 10, 12, 9])
INDUSTRY_SEASON_AMPLITUDE = np.array([0.15, 0.45, 0.40, 0.10, 0.30, 0.20])
INDUSTRY_MARGIN = np.array([0.22, 0.18, 0.15, 0.35, 0.42, 0.08])
INDUSTRY_BASKET = np.array([1.3, 0.8, 1.2, 1.0, 1.5, 1.1])

REGIONS = ("EMEA", "NA", "APAC", "LATAM")
REGION_SHARE = np.array([0.40, 0.30, 0.20, 0.10])
REGION_RATE = np.array([1.0, 1.1, 0.9, 0.85])
REGION_CHURN = np.array([1.0, 0.9, 1.1, 1.3])

GROWING, STABLE, DECLINING = 0, 1, 2
TREND_CHURN = np.array([0.0015, 0.004, 0.008])  # monthly hazard at acquisition

PRESENT_AT_START = 0.55
RAMP_DAYS = 60.0
FADE_DAYS = 120.0
FADE_FLOOR = 0.25
RETURN_PRONE_SHARE = 0.15
RETURN_FRACTION = (0.2, 1.0)  # uniform share of a returned line's amount that is credited


@dataclass(frozen=True)
class _Variant:
    """Parameters that differ between variants."""

    trend_mix: tuple[float, float, float]
    churn_multiplier: float
    default_months: int
    attributes: bool = True


_VARIANT_SPECS = {
    "base": _Variant((0.20, 0.60, 0.20), 1.0, 48),
    "short_history": _Variant((0.20, 0.60, 0.20), 1.0, 15),
    "no_attributes": _Variant((0.20, 0.60, 0.20), 1.0, 48, attributes=False),
    "growth_heavy": _Variant((0.45, 0.40, 0.15), 1.0, 48),
    "churn_heavy": _Variant((0.15, 0.45, 0.40), 3.5, 48),
}


@dataclass(frozen=True)
class _Accounts:
    """Per-account arrays of the generative story; days count from ``start``."""

    size: np.ndarray
    industry: np.ndarray
    region: np.ndarray
    employees: np.ndarray
    acquired: np.ndarray  # first active day
    until: np.ndarray  # first inactive day: churn day, or the end of the log
    churned: np.ndarray
    rate: np.ndarray  # orders per day, before drift and season
    basket: np.ndarray
    drift: np.ndarray  # log change of value per year
    rate_share: np.ndarray  # part of the drift carried by the order rate
    margin: np.ndarray
    return_prob: np.ndarray
    hazard: np.ndarray  # monthly churn hazard at acquisition
    acceleration: np.ndarray  # growth rate of the hazard per month


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
    accounts = _draw_accounts(rng, n_accounts, n_days, spec)
    account, day = _draw_orders(rng, accounts, _month_edges(first, stop), first.day_of_year - 1)
    account, day, amount, margin = _draw_lines(rng, accounts, account, day)
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


def _cumulative_hazard(acc: _Accounts, months: np.ndarray) -> np.ndarray:
    """``H(t)`` of :func:`_draw_churn_months` per account (rows) at ``months`` since acquisition."""
    a = acc.acceleration[:, None]
    h = acc.hazard[:, None]
    safe = np.where(a > 0, a, 1.0)
    return np.where(a > 0, h / safe * np.expm1(safe * months), h * months)


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


def _draw_accounts(rng: np.random.Generator, n: int, n_days: int, spec: _Variant) -> _Accounts:
    """Draw attributes, then the parameters that depend on them."""
    size = rng.choice(len(SIZES), size=n, p=SIZE_SHARE)
    industry = rng.choice(len(INDUSTRIES), size=n, p=INDUSTRY_SHARE)
    region = rng.choice(len(REGIONS), size=n, p=REGION_SHARE)
    low, high = SIZE_EMPLOYEES[size, 0], SIZE_EMPLOYEES[size, 1]
    employees = np.floor(low * (high / low) ** rng.random(n)).astype(np.int64)

    acquired = _draw_acquisition(rng, n, n_days)
    trend, drift, rate_share = _draw_trend(rng, n, spec.trend_mix)
    margin, false_key = _draw_margin(rng, size, industry)
    # Gamma with shape 2.5 and mean 1: most accounts near their size's rate, a few far above.
    rate = SIZE_RATE[size] * REGION_RATE[region] * rng.gamma(2.5, 1 / 2.5, n) / DAYS_PER_MONTH
    rate = np.where(false_key, rate * 1.8, rate)  # thin margins are bought with volume
    basket = SIZE_BASKET[size] * INDUSTRY_BASKET[industry] * rng.lognormal(0.0, 0.5, n)

    hazard = TREND_CHURN[trend] * SIZE_CHURN[size] * REGION_CHURN[region] * spec.churn_multiplier
    # A declining account's hazard grows as fast as its value shrinks.
    acceleration = np.where(trend == DECLINING, -drift, 0.0) / 12
    churn_day = acquired + _draw_churn_months(rng, hazard, acceleration) * DAYS_PER_MONTH
    churned = churn_day < n_days
    until = np.where(churned, np.ceil(np.minimum(churn_day, n_days)), n_days).astype(np.int64)

    return _Accounts(
        size=size,
        industry=industry,
        region=region,
        employees=employees,
        acquired=acquired,
        until=until,
        churned=churned,
        rate=rate,
        basket=basket,
        drift=drift,
        rate_share=rate_share,
        margin=margin,
        return_prob=_draw_return_prob(rng, n),
        hazard=hazard,
        acceleration=acceleration,
    )


def _draw_acquisition(rng: np.random.Generator, n: int, n_days: int) -> np.ndarray:
    """Day 0 for accounts already there on ``start``, else a uniform later day."""
    present = rng.random(n) < PRESENT_AT_START
    # Stop acquiring a month before the end so that new accounts can place orders.
    later = rng.integers(1, max(2, n_days - 30), size=n)
    return np.where(present, 0, later).astype(np.int64)


def _draw_trend(
    rng: np.random.Generator, n: int, mix: tuple[float, float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Trend type, yearly log drift of value and the share of it carried by the rate."""
    trend = np.searchsorted(np.cumsum(mix), rng.random(n) * sum(mix), side="right")
    trend = np.minimum(trend, DECLINING)
    growth = np.log(rng.uniform(1.15, 1.60, n))
    drift = np.select(
        [trend == GROWING, trend == DECLINING],
        [growth, np.log(rng.uniform(0.40, 0.85, n))],
        default=rng.normal(0.0, 0.04, n),
    )
    return trend, drift, rng.uniform(0.3, 0.8, n)


def _draw_margin(
    rng: np.random.Generator, size: np.ndarray, industry: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Margin rate per account around its industry mean, and the false key accounts."""
    n = len(size)
    margin = np.minimum(INDUSTRY_MARGIN[industry] * rng.lognormal(0.0, 0.3, n), 0.6)
    false_key = rng.random(n) < SIZE_FALSE_KEY[size]
    thin = rng.uniform(0.005, 0.045, n)
    return np.where(false_key, thin, margin), false_key


def _draw_churn_months(
    rng: np.random.Generator, hazard: np.ndarray, acceleration: np.ndarray
) -> np.ndarray:
    """Months to churn under the hazard ``hazard * exp(acceleration * t)``.

    The cumulative hazard ``H(t) = hazard / a * (exp(a t) - 1)`` is inverted at a unit
    exponential draw, so no time grid is needed.
    """
    exposure = rng.exponential(1.0, len(hazard)) / hazard
    safe = np.where(acceleration > 0, acceleration, 1.0)
    return np.where(acceleration > 0, np.log1p(safe * exposure) / safe, exposure)


def _draw_return_prob(rng: np.random.Generator, n: int) -> np.ndarray:
    """Probability that a line is returned: about 2 %, 5-15 % for return-prone accounts."""
    prone = rng.random(n) < RETURN_PRONE_SHARE
    return np.where(prone, rng.uniform(0.05, 0.15, n), rng.beta(2.0, 100.0, n))


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


def _draw_lines(
    rng: np.random.Generator, acc: _Accounts, account: np.ndarray, day: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split each order's value over one or more invoice lines with their margins."""
    # Lognormal with mean 1, so the basket parameter is the mean order value.
    order_value = _mean_order_value(acc, account, day) * rng.lognormal(-0.125, 0.5, len(day))

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
