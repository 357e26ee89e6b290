"""A Bayes reference for the simulator: its own model, with each account's parameters estimated.

The oracle (:func:`keyltv.data.simulate.expected_value`) knows every account's latent
parameters, so its lead over the peers bounds from above what a model could reach; it
does not say what the log allows. This reference answers that: the posterior mean of
the same expected value, given what the log shows of each account before the cutoff.

What it knows beyond the log (a model has to learn these or do without):

- the generative story itself (the forms of drift, season, ramp-up, churn hazard and
  the fade before churn, and the order values' lognormal noise);
- each account's acquisition day, industry (so its season), return propensity and,
  for variants with attributes, size;
- a prior: the parameters of ``prior_accounts`` accounts drawn from the story apart
  from the log's (of the account's size, where the variant has sizes), so that the
  account's own parameters are not in the prior's support.

What it estimates from the account's orders before the cutoff (their count per month
and each order's value): the order rate and basket, the drift and its split between
rate and basket, the churn hazard and its acceleration, and whether the account is
still active, with churn placed at the end of a month on or after its last order.
The posterior is exact over that discrete prior and that grid of churn months.

It ranks by the posterior mean value, the quantity keyltv predicts; a ranking metric
such as Spearman may reward another summary of the posterior. It also draws from the
posterior predictive, so that the chance of an event (decline, growth) is the share of
draws in which it happens. The benchmark
(``benchmarks/bench_accuracy.py``) prints it beside the oracle, as a level that a model
of this log could reach in principle.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from keyltv.data.simulate import (
    _check_n_accounts,
    _check_period,
    _check_variant,
    _customer_ids,
    _draw_order_story,
    _intensity,
    _month_edges,
    _parse_day,
)
from keyltv.data.simulate_params import (
    DAYS_PER_MONTH,
    DAYS_PER_YEAR,
    FADE_DAYS,
    FADE_FLOOR,
    ORDER_LOG_MEAN,
    ORDER_LOG_SD,
    RETURN_FRACTION,
    _Accounts,
    _draw_accounts,
    cumulative_hazard,
    months_at_cumulative_hazard,
)

__all__ = ["posterior_reference"]

# Points of the horizon at which the future intensity is evaluated: one a month (the
# simulator's own resolution; at 365 days the oracle's sum is matched to 1e-5).
_DAYS_PER_POINT = DAYS_PER_MONTH


def posterior_reference(
    n_accounts: int = 2000,
    *,
    as_of: str,
    horizon_days: int,
    variant: str = "base",
    start: str = "2021-01-01",
    end: str | None = None,
    seed: int = 0,
    prior_accounts: int = 20_000,
    draws: int = 400,
) -> tuple[pd.Series, pd.DataFrame]:
    """Posterior mean of each account's net value over the horizon, and draws of it.

    The same arguments as :func:`keyltv.data.simulate.simulate_b2b` give the same
    accounts and orders; see the module docstring for what the reference knows and what
    it estimates.

    Parameters
    ----------
    prior_accounts : int, default 20000
        Accounts drawn for the prior. With the log's own 4,000 accounts as the prior
        (each left out of its own), the benchmark's `base` 2024 origin gave a Gini lead
        of +0.0112 and an aggregate of 0.93: too few points of a six-parameter prior
        for accounts with long histories.
    draws : int, default 400
        Draws of each account's future value from the posterior predictive: parameters
        and churn month from the posterior, then, for an account still active, its churn
        day after ``as_of``, Poisson orders per month and lognormal order values. The
        chance of an event (value below half the trailing value, say) is then the share
        of draws in which it happens.

    Returns
    -------
    expected : pandas.Series
        Indexed by ``customer_id``, one value per account; NaN for accounts acquired on
        or after ``as_of`` (a model scores only accounts with a line before it).
    draws : pandas.DataFrame
        One row per account (as ``expected``; NaN rows as there) and ``draws`` columns.
    """
    spec = _check_variant(variant)
    _check_n_accounts(n_accounts)
    first, stop = _check_period(start, end, spec.default_months)
    rng = np.random.default_rng(seed)
    acc, account, day, order_value = _draw_order_story(rng, n_accounts, (stop - first).days,
                                                       spec, first, stop)
    origin = (_parse_day("as_of", as_of) - first).days
    history = _history(acc, account, day, order_value, _month_edges(first, stop), origin,
                       first.day_of_year - 1)
    future = _future(acc, origin, horizon_days, first.day_of_year - 1)
    # The prior: a population drawn apart from the log's accounts (its own seed), so that
    # no account's own parameters are in the support.
    prior = _draw_accounts(np.random.default_rng([seed, 1]), prior_accounts,
                           (stop - first).days, spec)
    # The prior's points per size (one set for all where the variant has no sizes).
    by_size = {size: _atoms(prior, prior.size == size if spec.attributes
                            else np.ones(prior_accounts, bool))
               for size in np.unique(acc.size)}
    values = np.full(n_accounts, np.nan)
    sampled = np.full((n_accounts, draws), np.nan)
    # The draws' own stream, so that the posterior means do not depend on ``draws``.
    draw_rng = np.random.default_rng([seed, 2])
    for i in np.flatnonzero(acc.acquired < origin):
        atoms = by_size[acc.size[i]]
        weight = _posterior(i, atoms, acc, history, origin)
        values[i] = weight[0] @ _value_if_alive(i, atoms, acc, future, origin)
        if draws:
            sampled[i] = _draw_values(draw_rng, draws, i, atoms, weight, acc, future, origin)
    index = pd.Index(_customer_ids(n_accounts), name="customer_id")
    return pd.Series(values, index=index), pd.DataFrame(sampled, index=index)


@dataclass(frozen=True)
class _History:
    """What the log shows of each account before the cutoff, per month (columns)."""

    counts: np.ndarray  # orders per account and month
    exposure: np.ndarray  # active days x season x ramp-up: expected orders at rate 1, no drift
    years: np.ndarray  # years since acquisition at mid-month
    mid: np.ndarray  # day of each month's middle
    end: np.ndarray  # day each month ends (the churn days on the grid)
    last_month: np.ndarray  # month of the last order, -1 without one
    # Sufficient statistics of log order values x (noise mean removed) and their
    # years since acquisition y: n, sum x, sum x^2, sum y, sum y^2, sum xy.
    n: np.ndarray
    sx: np.ndarray
    sxx: np.ndarray
    sy: np.ndarray
    syy: np.ndarray
    sxy: np.ndarray


def _history(acc: _Accounts, account: np.ndarray, day: np.ndarray, order_value: np.ndarray,
             edges: np.ndarray, origin: int, start_day_of_year: int) -> _History:
    """Monthly order counts, exposures and order-value statistics before ``origin``."""
    before = day < origin
    account, day, order_value = account[before], day[before], order_value[before]
    n = len(acc.rate)
    edges = edges[: np.searchsorted(edges, origin) + 1]  # months that start before the cutoff
    # The story's intensity without rate, drift or churn: season x ramp-up, at mid-month
    # as the log was drawn, over each month's active days up to the cutoff.
    shape = _unit_intensity(acc, edges, start_day_of_year)
    low = np.maximum(acc.acquired[:, None], edges[None, :-1])
    high = np.minimum(origin, edges[None, 1:])
    mid = (edges[:-1] + edges[1:]) / 2
    month = np.searchsorted(edges, day, side="right") - 1
    counts = np.zeros((n, len(mid)))
    np.add.at(counts, (account, month), 1.0)
    last_month = np.full(n, -1)
    np.maximum.at(last_month, account, month)
    x = np.log(order_value) - ORDER_LOG_MEAN
    y = (day - acc.acquired[account]) / DAYS_PER_YEAR
    stats = [np.bincount(account, weights=w, minlength=n)
             for w in (np.ones_like(x), x, x * x, y, y * y, x * y)]
    return _History(counts, shape * np.maximum(high - low, 0),
                    np.maximum(mid[None, :] - acc.acquired[:, None], 0) / DAYS_PER_YEAR,
                    mid, edges[1:].astype(float), last_month, *stats)


@dataclass(frozen=True)
class _Future:
    """The horizon on a monthly grid: what does not depend on the estimated parameters."""

    day: np.ndarray  # day of each point
    years: np.ndarray  # years since acquisition at each point (accounts x points)
    months: np.ndarray  # months since acquisition at each point
    exposure: np.ndarray  # days x season x ramp-up, 0 before acquisition
    kept: np.ndarray  # share of value not returned, per account
    weight: np.ndarray  # exposure x kept


def _future(acc: _Accounts, origin: int, horizon_days: int, start_day_of_year: int) -> _Future:
    """The horizon's grid, as :func:`keyltv.data.simulate.expected_value` sums it."""
    points = max(1, round(horizon_days / _DAYS_PER_POINT))
    edges = origin + np.arange(points + 1) * horizon_days / points
    t = (edges[:-1] + edges[1:]) / 2
    since = np.maximum(t[None, :] - acc.acquired[:, None], 0.0)
    kept = 1 - np.mean(RETURN_FRACTION) * acc.return_prob
    exposure = (_unit_intensity(acc, edges, start_day_of_year) * (horizon_days / points)
                * (acc.acquired[:, None] <= t[None, :]))
    return _Future(t, since / DAYS_PER_YEAR, since / DAYS_PER_MONTH, exposure, kept,
                   exposure * kept[:, None])


def _unit_intensity(acc: _Accounts, edges: np.ndarray, start_day_of_year: int) -> np.ndarray:
    """The story's intensity at rate 1 without drift or churn: season x ramp-up, at mid-interval."""
    n = len(acc.rate)
    return _intensity(replace(acc, rate=np.ones(n), drift=np.zeros(n), churned=np.zeros(n, bool)),
                      edges, start_day_of_year)


@dataclass(frozen=True)
class _Atoms:
    """The prior's points: the parameters that the reference estimates."""

    rate: np.ndarray
    basket: np.ndarray
    drift: np.ndarray
    rate_share: np.ndarray
    hazard: np.ndarray
    acceleration: np.ndarray


def _atoms(prior: _Accounts, keep: np.ndarray) -> _Atoms:
    """The prior accounts' estimated parameters, those of ``keep`` only."""
    return _Atoms(prior.rate[keep], prior.basket[keep], prior.drift[keep],
                  prior.rate_share[keep], prior.hazard[keep], prior.acceleration[keep])


def _months(acc: _Accounts, i: int, day: float) -> float:
    """Months from account ``i``'s acquisition to ``day`` (0 before it)."""
    return max(day - acc.acquired[i], 0.0) / DAYS_PER_MONTH


def _hazard_at(atoms: _Atoms, months: float) -> np.ndarray:
    """Each atom's cumulative churn hazard ``months`` after acquisition."""
    return cumulative_hazard(atoms.hazard, atoms.acceleration, np.array([months]))[:, 0]


def _posterior(i: int, atoms: _Atoms, acc: _Accounts, history: _History,
               origin: int) -> np.ndarray:
    """Posterior of account ``i`` over (state, atom): summing to 1, one row per state.

    Row 0 is "active at the cutoff"; row k > 0 is "churned at the end of the k-th month
    on the grid" (months from the last order, or acquisition, to the cutoff).
    """
    rate, basket, drift = atoms.rate, atoms.basket, atoms.drift
    rate_drift = drift * atoms.rate_share
    basket_drift = drift - rate_drift
    counts, years = history.counts[i], history.years[i]
    # Order counts: Poisson per month with mean rate x exp(rate_drift x years) x exposure.
    expected = rate[:, None] * np.exp(np.outer(rate_drift, years)) * history.exposure[i]
    log_rate = counts @ years * rate_drift + counts.sum() * np.log(rate)
    # Order values: log value = log basket + basket_drift x y + noise (sd ORDER_LOG_SD).
    a, c = np.log(basket), basket_drift
    squares = (history.sxx[i] - 2 * a * history.sx[i] - 2 * c * history.sxy[i]
               + history.n[i] * a * a + 2 * a * c * history.sy[i] + c * c * history.syy[i])
    values = -squares / (2 * ORDER_LOG_SD ** 2)

    def survival(day: float) -> np.ndarray:
        return np.exp(-_hazard_at(atoms, _months(acc, i, day)))

    alive_at_origin = survival(origin)
    cumulative = np.cumsum(expected, axis=1)
    # Alive at the cutoff (first row), or churned at the end of a month on or after the
    # last order (later rows): log likelihood of the counts plus the log prior.
    rows = [log_rate - cumulative[:, -1] + np.log(alive_at_origin)]
    acquired_month = max(np.searchsorted(history.end, acc.acquired[i], side="right"), 0)
    for q in range(max(history.last_month[i], acquired_month), len(years)):
        churn_day = history.end[q]
        if churn_day >= origin:
            break
        # The fade: the rate falls linearly to FADE_FLOOR over the FADE_DAYS before churn.
        fade = np.clip((churn_day - history.mid[: q + 1]) / FADE_DAYS, FADE_FLOOR, 1.0)
        faded = fade < 1.0
        # Every order lies in months up to q, so the counts' terms are the active row's.
        log_counts = log_rate + counts[: q + 1][faded] @ np.log(fade[faded])
        lost = expected[:, : q + 1][:, faded] @ (1.0 - fade[faded])
        start = max(history.end[q - 1] if q > 0 else 0.0, float(acc.acquired[i]))
        prior = np.maximum(survival(start) - survival(churn_day), 1e-300)
        rows.append(log_counts - (cumulative[:, q] - lost) + np.log(prior))
    log_post = np.vstack(rows) + values
    weight = np.exp(log_post - log_post.max())
    return weight / weight.sum()


def _value_if_alive(i: int, atoms: _Atoms, acc: _Accounts, future: _Future,
                    origin: int) -> np.ndarray:
    """Expected future value of account ``i`` under each atom, if active at the cutoff.

    Rate x basket x exp(drift x years) x survival after the cutoff, summed over the
    horizon's grid as :func:`keyltv.data.simulate.expected_value` sums it.
    """
    still = np.exp(-(cumulative_hazard(atoms.hazard, atoms.acceleration, future.months[i])
                     - _hazard_at(atoms, _months(acc, i, origin))[:, None]))
    growth = np.exp(np.outer(atoms.drift, future.years[i]))
    return atoms.rate * atoms.basket * ((growth * still) @ future.weight[i])


def _draw_values(rng: np.random.Generator, draws: int, i: int, atoms: _Atoms,
                 weight: np.ndarray, acc: _Accounts, future: _Future,
                 origin: int) -> np.ndarray:
    """``draws`` values of account ``i``'s future from its posterior predictive.

    Churned at the cutoff: zero. Active: a churn day after the cutoff from the atom's
    hazard (its cumulative hazard beyond the cutoff's is a unit exponential, as the
    story draws it), then each month's orders as the story draws them (Poisson at the
    month's intensity, faded before churn) with lognormal values, less the expected
    share returned.
    """
    pick = rng.choice(weight.size, size=draws, p=weight.ravel())
    alive, j = pick // weight.shape[1] == 0, pick % weight.shape[1]
    hazard, acceleration = atoms.hazard[j], atoms.acceleration[j]
    target = _hazard_at(atoms, _months(acc, i, origin))[j] + rng.exponential(1.0, draws)
    churn_month = months_at_cumulative_hazard(hazard, acceleration, target)
    churn_day = acc.acquired[i] + churn_month * DAYS_PER_MONTH
    day = future.day[None, :]
    fade = np.clip((churn_day[:, None] - day) / FADE_DAYS, FADE_FLOOR, 1.0)
    rate_drift = atoms.drift[j] * atoms.rate_share[j]
    mean_orders = (atoms.rate[j, None] * np.exp(np.outer(rate_drift, future.years[i]))
                   * future.exposure[i] * fade * (churn_day[:, None] > day) * alive[:, None])
    counts = rng.poisson(mean_orders)
    basket = atoms.basket[j, None] * np.exp(np.outer(atoms.drift[j] - rate_drift,
                                                     future.years[i]))
    cell = np.repeat(np.arange(counts.size), counts.ravel())
    values = basket.ravel()[cell] * rng.lognormal(ORDER_LOG_MEAN, ORDER_LOG_SD, cell.size)
    total = np.bincount(cell // counts.shape[1], weights=values, minlength=draws)
    return total * future.kept[i]
