"""Parameters of the B2B simulator, and each account's latent parameters drawn from them.

The fixed tables (per size, industry and region), the variants, and the draws of the
generative story told in :mod:`keyltv.data.simulate` that fix an account once and for
all: attributes, acquisition, order rate and basket, trend, churn, margin and return
propensity. The simulated log and its oracle (:func:`keyltv.data.simulate.expected_value`)
both start from one draw of these, so one seed gives both the same accounts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
# An order's value is its mean times a lognormal factor of mean 1: exp(N(-0.125, 0.5^2)).
ORDER_LOG_SD = 0.5
ORDER_LOG_MEAN = -ORDER_LOG_SD ** 2 / 2


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
    return months_at_cumulative_hazard(hazard, acceleration, rng.exponential(1.0, len(hazard)))


def months_at_cumulative_hazard(hazard: np.ndarray, acceleration: np.ndarray,
                                target: np.ndarray) -> np.ndarray:
    """Months since acquisition at which ``H(t)`` (see :func:`cumulative_hazard`) reaches ``target``."""
    exposure = target / hazard
    safe = np.where(acceleration > 0, acceleration, 1.0)
    return np.where(acceleration > 0, np.log1p(safe * exposure) / safe, exposure)


def _cumulative_hazard(acc: _Accounts, months: np.ndarray) -> np.ndarray:
    """``H(t)`` of :func:`_draw_churn_months` per account (rows) at ``months`` since acquisition."""
    return cumulative_hazard(acc.hazard, acc.acceleration, months)


def cumulative_hazard(hazard: np.ndarray, acceleration: np.ndarray,
                      months: np.ndarray) -> np.ndarray:
    """``H(t)`` for hazards and accelerations (rows) at ``months`` (a row, or one per row)."""
    a, h = acceleration[:, None], hazard[:, None]
    safe = np.where(a > 0, a, 1.0)
    return np.where(a > 0, h / safe * np.expm1(safe * months), h * months)


def _draw_return_prob(rng: np.random.Generator, n: int) -> np.ndarray:
    """Probability that a line is returned: about 2 %, 5-15 % for return-prone accounts."""
    prone = rng.random(n) < RETURN_PRONE_SHARE
    return np.where(prone, rng.uniform(0.05, 0.15, n), rng.beta(2.0, 100.0, n))
