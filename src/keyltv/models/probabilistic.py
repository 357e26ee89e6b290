"""BG/NBD or Pareto/NBD with Gamma-Gamma spend, wrapped behind keyltv's interface.

lifetimes is archived upstream, so nothing outside this module touches it, and only the
fitted parameters are kept (a fitted lifetimes object holds its training frame and a
lambda that the standard pickle cannot store). Paper symbols stay inside this module.

Time runs in weeks inside the model (as in the papers): the optimiser is scale
sensitive, and published parameters are in weeks.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout

import numpy as np
import pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter, ModifiedBetaGeoFitter, ParetoNBDFitter
from lifetimes.utils import ConvergenceError
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from keyltv.models._frames import require_columns, require_finite

# MBG/NBD lets one-time buyers drop out too; under BG/NBD their P(alive) is always 1,
# which ranks long-gone one-time buyers as the most alive accounts of the book.
_FITTERS = {"bgnbd": BetaGeoFitter, "mbgnbd": ModifiedBetaGeoFitter, "pareto": ParetoNBDFitter}
# The feature columns the probabilistic models read (no missing-value branch).
INPUTS = ("frequency", "recency", "T", "repeat_order_value")
# lifetimes starts Nelder-Mead for Pareto/NBD from unseeded np.random.normal(1, 0.05)
# draws, so two fits of the same data differed in the fifth digit (and the blend
# weights amplified it). Its mean as a fixed start makes a fit reproducible.
_START = {"pareto": {"initial_params": np.ones(4)}}
DAYS_PER_WEEK = 7.0
log = logging.getLogger(__name__)


class ProbabilisticLTV(RegressorMixin, BaseEstimator):
    """Expected value over a horizon = expected orders x expected spend per order.

    Parameters
    ----------
    kind : {"bgnbd", "mbgnbd", "pareto"}, default="bgnbd"
        Purchase-count model: BG/NBD (Fader, Hardie and Lee 2005), MBG/NBD (Batislam,
        Denizel and Filiztekin 2007) or Pareto/NBD (Schmittlein, Morrison and Colombo
        1987).
    horizon_days : int, default=365
        Prediction horizon.
    penalizer : float, default=0.0
        L2 penalty on the count model's parameters; raised automatically (and reported
        in ``penalizer_``) when the unpenalised fit does not converge.
    max_fit_rows : int or None, default=100_000
        Accounts a fit reads at most. A larger book is fitted on a seeded uniform sample
        of this many accounts (logged): seven parameters need far fewer rows, and B2B
        histories rarely share (frequency, recency, T), so merging them alone does not
        bound the cost. Predictions always cover every account. ``None`` reads all.
    random_state : int, default=0
        Seed of that sample.

    Attributes
    ----------
    params_ : dict
        Count-model parameters (``r, alpha, a, b`` or ``r, alpha, s, beta``), weeks.
    spend_params_ : dict
        Gamma-Gamma ``p, q, v``; empty when no repeat buyer had positive spend.
    fallback_spend_ : float
        Mean order value used when the Gamma-Gamma model cannot be fitted.

    References
    ----------
    Fader, P. S., Hardie, B. G. S., Lee, K. L. (2005). "Counting Your Customers" the Easy
    Way. Marketing Science 24(2). Fader, Hardie, Lee (2005). RFM and CLV: Using Iso-Value
    Curves for Customer Base Analysis. Journal of Marketing Research 42(4).
    """

    def __init__(self, *, kind: str = "bgnbd", horizon_days: int = 365, penalizer: float = 0.0,
                 max_fit_rows: int | None = 100_000, random_state: int = 0):
        self.kind = kind
        self.horizon_days = horizon_days
        self.penalizer = penalizer
        self.max_fit_rows = max_fit_rows
        self.random_state = random_state

    def fit(self, X: pd.DataFrame, y: object = None) -> ProbabilisticLTV:
        """Fit the count model on (frequency, recency, T) and Gamma-Gamma on spend.

        Identical (frequency, recency, T) rows are merged with weights, so the cost grows
        with distinct histories, not with accounts.

        Parameters
        ----------
        X : pandas.DataFrame
            Features at one cutoff, with ``frequency``, ``recency``, ``T`` and
            ``repeat_order_value`` (see :func:`check_inputs`).
        y : ignored
            The model learns from the history before the cutoff alone; ``y`` is
            accepted for the scikit-learn contract (``fit(X, y)`` in a pipeline or a
            cross-validation) and not read.

        Raises
        ------
        ValueError
            Unknown ``kind``, a missing or non-finite input, or no account with a
            repeat order (nothing to fit).
        """
        if self.kind not in _FITTERS:
            raise ValueError(f"kind={self.kind!r} is not one of {sorted(_FITTERS)}")
        check_inputs(X, type(self).__name__)
        if not (X["frequency"] > 0).any():
            raise ValueError(
                "no account has a repeat order before the cutoff: "
                f"{self.kind} cannot be fitted (every frequency is 0)"
            )
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        rows = self._fit_rows(X)
        counts = _compress(_in_weeks(rows))
        self.params_, self.penalizer_ = self._fit_counts(counts)
        self.spend_params_, self.fallback_spend_ = _fit_spend(rows)
        return self

    def _fit_rows(self, X: pd.DataFrame) -> pd.DataFrame:
        """All accounts, or a seeded sample of ``max_fit_rows`` with a repeat buyer in it."""
        if self.max_fit_rows is None or len(X) <= self.max_fit_rows:
            return X
        rng = np.random.default_rng(self.random_state)
        sample = X.iloc[np.sort(rng.choice(len(X), size=self.max_fit_rows, replace=False))]
        if not (sample["frequency"] > 0).any():
            return X
        log.info("%s fitted on a seeded sample of %d of %d accounts (max_fit_rows)",
                 self.kind, len(sample), len(X))
        return sample

    def _fit_counts(self, counts: pd.DataFrame) -> tuple[dict[str, float], float]:
        """Fit, retrying with a growing penalty when the optimiser does not converge."""
        for penalizer in (self.penalizer, 0.001, 0.01, 0.1):
            if penalizer < self.penalizer:
                continue
            fitter = _FITTERS[self.kind](penalizer_coef=penalizer)
            try:
                with _quiet():
                    fitter.fit(counts["frequency"], counts["recency"], counts["T"],
                               weights=counts["weight"], **_START.get(self.kind, {}))
            except ConvergenceError:
                continue
            return {k: float(v) for k, v in fitter.params_.items()}, penalizer
        raise ValueError(f"{self.kind} did not converge even with penalizer 0.1")

    def _fitter(self) -> BetaGeoFitter | ModifiedBetaGeoFitter | ParetoNBDFitter:
        fitter = _FITTERS[self.kind]()
        fitter.params_ = pd.Series(self.params_)
        return fitter

    def predict_orders(self, X: pd.DataFrame, horizon_days: int | None = None) -> np.ndarray:
        """Expected number of orders in the next ``horizon_days`` (default: the horizon)."""
        check_is_fitted(self)
        weeks = _in_weeks(X)
        t = (self.horizon_days if horizon_days is None else horizon_days) / DAYS_PER_WEEK
        with np.errstate(all="ignore"):
            orders = self._fitter().conditional_expected_number_of_purchases_up_to_time(
                t, weeks["frequency"], weeks["recency"], weeks["T"]
            )
        return np.nan_to_num(np.asarray(orders, dtype=float), nan=0.0, posinf=0.0).clip(0.0)

    def predict_p_alive(self, X: pd.DataFrame) -> np.ndarray:
        """Probability that each account is still active at the cutoff."""
        check_is_fitted(self)
        weeks = _in_weeks(X)
        with np.errstate(all="ignore"):
            alive = self._fitter().conditional_probability_alive(
                weeks["frequency"], weeks["recency"], weeks["T"]
            )
        return np.nan_to_num(np.asarray(alive, dtype=float), nan=0.0).clip(0.0, 1.0)

    def predict_spend(self, X: pd.DataFrame) -> np.ndarray:
        """Expected value of a future order (Gamma-Gamma posterior mean)."""
        check_is_fitted(self)
        check_inputs(X, type(self).__name__)
        if not self.spend_params_:
            return np.full(len(X), self.fallback_spend_)
        fitter = GammaGammaFitter()
        fitter.params_ = pd.Series(self.spend_params_)
        # Non-positive repeat spend (net returns) gets the population mean (frequency 0).
        positive = X["repeat_order_value"] > 0
        frequency = X["frequency"].where(positive, 0.0)
        spend = X["repeat_order_value"].where(positive, 1.0)
        return np.asarray(
            fitter.conditional_expected_average_profit(frequency, spend), dtype=float
        )

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Expected value over the horizon: expected orders x expected spend."""
        return self.predict_orders(X) * self.predict_spend(X)


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence a lifetimes fit.

    lifetimes prints the optimiser's state to stdout before raising ConvergenceError,
    which would corrupt a CLI's output; the caller handles the error.
    """
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def check_inputs(X: pd.DataFrame, owner: str = "ProbabilisticLTV") -> None:
    """Raise ``ValueError`` unless ``X`` has every model input, each finite in every row.

    Nothing here reads a missing value as a default: grouping identical histories
    would drop the row from the fit without a word, and lifetimes' formulas turn it
    into NaN (which used to become an expected value of 0). The feature query never
    leaves these inputs missing (an account without repeat orders has ``frequency`` 0
    and ``repeat_order_value`` 0), so a gap comes from a frame built elsewhere.
    """
    require_columns(X, INPUTS, owner)
    require_finite(X, INPUTS, owner)


def _in_weeks(X: pd.DataFrame) -> pd.DataFrame:
    check_inputs(X)
    out = X[["frequency", "recency", "T"]].astype(float)
    out[["recency", "T"]] = out[["recency", "T"]] / DAYS_PER_WEEK
    return out


def _compress(weeks: pd.DataFrame) -> pd.DataFrame:
    """Merge identical (frequency, recency, T) rows into one row with a weight.

    ``groupby`` drops rows with a NaN key: :func:`check_inputs` refuses those first.
    """
    return (
        weeks.groupby(["frequency", "recency", "T"], sort=True).size()
        .rename("weight").reset_index()
    )


def _fit_spend(X: pd.DataFrame) -> tuple[dict[str, float], float]:
    """Gamma-Gamma on repeat buyers with positive spend; a plain mean if that fails."""
    buyers = X[(X["frequency"] > 0) & (X["repeat_order_value"] > 0)]
    fallback = float(buyers["repeat_order_value"].mean()) if len(buyers) else 0.0
    if len(buyers) < 10:
        return {}, fallback
    fitter = GammaGammaFitter()
    try:
        with _quiet():
            fitter.fit(buyers["frequency"], buyers["repeat_order_value"])
    except ConvergenceError:
        return {}, fallback
    params = {k: float(v) for k, v in fitter.params_.items()}
    # q <= 1 makes the population mean infinite: the spend model is unusable.
    return (params, fallback) if params["q"] > 1 else ({}, fallback)
