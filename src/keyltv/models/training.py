"""How the parts of the deployable predictor are fitted from a validated log.

The ``fit_*`` functions decide which training rows each estimator learns from:

- probabilistic models and the baseline learn from the features at the cutoff itself;
- LightGBM models learn from stacked earlier cutoffs (features before, labels after).

:class:`keyltv.models.bundle.KeyLTVModel` holds what they fit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd

from keyltv.config import Config
from keyltv.data.transactions import TransactionLog
from keyltv.features import (
    account_features,
    sampled_training_frame,
    training_cutoffs,
    with_attributes,
)
from keyltv.features.attributes import model_attributes
from keyltv.models.baseline import TrailingValueRegressor
from keyltv.models.events import GBMClassifier
from keyltv.models.gbm import GBMRegressor
from keyltv.models.hybrid import HybridRegressor
from keyltv.models.probabilistic import ProbabilisticLTV

logger = logging.getLogger(__name__)


@dataclass
class TrainingData:
    """Everything the estimators learn from, cut at one date.

    Attributes
    ----------
    as_of : datetime.date
        The cutoff the fitted models will predict from.
    current : pandas.DataFrame
        Features (with attributes) at ``as_of``: one row per account seen before it.
    stacked_X, stacked_y : pandas.DataFrame or None
        Stacked earlier cutoffs for supervised models; None when the history is too
        short, with the reason in ``note``.
    cutoffs : list of datetime.date
        Cutoffs used for ``stacked_*``.
    sampled : int
        Rows left out of ``stacked_*`` by the training-row cap.
    deployed_horizon_days : int or None
        Horizon of the predictor these rows stand for, when it is not the rows' own:
        the selection backtest fits at half the horizon, but its models must make the
        same choices as their refit at the full one (see :func:`full_window_days`).
    """

    as_of: date
    current: pd.DataFrame
    stacked_X: pd.DataFrame | None
    stacked_y: pd.DataFrame | None
    cutoffs: list[date] = field(default_factory=list)
    sampled: int = 0
    note: str | None = None
    first_date: date | None = None
    deployed_horizon_days: int | None = None


def full_window_days(data: TrainingData, horizon_days: int) -> int:
    """History a training cutoff needs before it for whole trailing windows.

    That of the deployed horizon, also in the selection backtest, whose own horizon is
    half of it: with its own, it judged event classifiers (and GBMs started from run
    rates) on a 23-month log where the refit at the full horizon deployed the
    probabilistic fallback, and printed their AUCs and learned a flag threshold on
    their scores (audit 29). The stacked cutoffs are the same dates in both fits, to
    within a day (see
    :func:`keyltv.evaluation.backtest.validation_horizon`), so the same rule makes the
    same choice.
    """
    return data.deployed_horizon_days or horizon_days


def training_data(
    log: TransactionLog, as_of: date, config: Config, accounts: pd.DataFrame | None
) -> TrainingData:
    """Cut ``log`` at ``as_of`` and at the earlier stacked cutoffs.

    When the history before ``as_of`` is too short for a full label window, the
    supervised rows use the longest label window that fits (at least 28 days) and the
    labels are scaled to the horizon per account (see :func:`_scale_labels`).
    Id-like attribute columns are left out (see
    :func:`keyltv.features.attributes.id_like_attributes`), and a date attribute is
    counted in days before each row's own cutoff.
    """
    h = config.horizon_days
    accounts = model_attributes(accounts, config.account_text_columns)
    current = with_attributes(account_features(log, as_of, h), accounts, as_of)
    t = config.training
    label_days = min(h, (as_of - log.first_date).days - t.min_feature_days)
    if label_days < MIN_LABEL_DAYS:
        return TrainingData(as_of, current, None, None, note=(
            f"{log.source}: {(as_of - log.first_date).days} days of history before {as_of} "
            f"leave no label window of {MIN_LABEL_DAYS}+ days after {t.min_feature_days} "
            "days of features (training.min_feature_days)"))
    cutoffs = training_cutoffs(log, as_of, label_days, t.n_cutoffs, t.cutoff_step_days,
                               t.min_feature_days)
    if len(cutoffs) < t.n_cutoffs:  # the rest would start before the log
        logger.info("GBM training cutoffs: %d of training.n_cutoffs=%d have "
                    "training.min_feature_days=%d days of history before them",
                    len(cutoffs), t.n_cutoffs, t.min_feature_days)
    X, y, sampled = sampled_training_frame(log, cutoffs, h, label_days,
                                           max_rows=t.max_training_rows, seed=config.seed)
    if sampled:
        logger.info("GBM training rows: a seeded sample of %d of %d stacked rows "
                    "(training.max_training_rows)", len(X), len(X) + sampled)
    note = None
    if label_days < h:
        y = _scale_labels(X, y, label_days, h)
        note = f"labels over {label_days} days scaled to {h} by BG/NBD's expected-orders ratio"
    X = with_attributes(X, accounts)
    return TrainingData(as_of, current, X, y, cutoffs, sampled, note, log.first_date)


MIN_LABEL_DAYS = 28


def _scale_labels(X: pd.DataFrame, y: pd.DataFrame, label_days: int, horizon_days: int) -> pd.DataFrame:
    """Scale value over ``label_days`` to ``horizon_days`` per account, per cutoff.

    A flat ``horizon / label`` factor would assume every account stays active; the
    ratio of BG/NBD expected orders over the two windows lets accounts that are
    probably gone contribute less, which is the honest extrapolation. Where BG/NBD
    cannot be fitted (no repeat buyer) the flat factor is used.
    """
    factor = np.full(len(X), horizon_days / label_days)
    groups = X["cutoff"].to_numpy()
    for group in np.unique(groups):
        rows = groups == group
        try:
            prob = ProbabilisticLTV(horizon_days=horizon_days).fit(X[rows])
        except ValueError:
            continue
        short = prob.predict_orders(X[rows], label_days)
        long = prob.predict_orders(X[rows], horizon_days)
        factor[rows] = np.where(short > 1e-9, long / np.maximum(short, 1e-9), factor[rows])
    scaled = y.copy()
    for column in ("value", "orders", "profit"):
        scaled[column] = y[column].to_numpy() * factor
    return scaled


def make_value_model(name: str, config: Config, kind_seed: int | None = None):
    """A fresh, unfitted value model by its config name."""
    h, seed = config.horizon_days, config.seed if kind_seed is None else kind_seed
    return {
        "trailing": lambda: TrailingValueRegressor(),
        "bgnbd": lambda: ProbabilisticLTV(kind="bgnbd", horizon_days=h),
        # keyltv's own count model (bgnbd and pareto are the peers, as lifetimes fits
        # them): its spend model reads every order, the first one too (see ``spend``).
        "mbgnbd": lambda: ProbabilisticLTV(kind="mbgnbd", horizon_days=h, spend="all"),
        "pareto": lambda: ProbabilisticLTV(kind="pareto", horizon_days=h),
        "lightgbm": lambda: GBMRegressor(horizon_days=h, random_state=seed),
        "hybrid": lambda: HybridRegressor(kind="mbgnbd", horizon_days=h, random_state=seed),
    }[name]()


SUPERVISED = ("lightgbm", "hybrid")


def fit_value_model(name: str, data: TrainingData, config: Config):
    """Fit one value model on the rows it learns from.

    Raises
    ------
    ValueError
        When the model cannot be fitted on this data (too short a history, no repeat
        buyer); the message says why and the caller skips the model.
    """
    model = make_value_model(name, config)
    if name in SUPERVISED:
        if data.stacked_X is None:
            raise ValueError(data.note or "no training rows")
        model.set_params(run_rate_offset=full_trailing_windows(data, config.horizon_days))
        return model.fit(data.stacked_X, data.stacked_y["value"].to_numpy())
    return model.fit(data.current)


def full_trailing_windows(data: TrainingData, horizon_days: int) -> bool:
    """Whether the latest training cutoff has a whole horizon of log before it.

    Only then do the GBMs start from each account's run rate (``run_rate_offset``, see
    :class:`~keyltv.models.gbm.GBMRegressor`). Where the start of the log cuts the
    trailing windows of the training rows short, their run rates are guesses from a
    few months, and a model that learned to scale them fitted worse than one that
    learned the value directly (ad hoc, LightGBM, seed 7: on CDNOW's 39-week history
    normalized Gini -0.003, decile MAPE 0.41 against 0.27, aggregate ratio 0.70
    against 0.81; on the simulator's 15-month history Gini -0.001, aggregate ratio 0.79
    against 1.14; at six four-year simulator origins Gini +0.001 on average, decile
    MAPE 0.08 against 0.18).
    """
    if not data.cutoffs or data.first_date is None:
        return False
    return (max(data.cutoffs) - data.first_date).days >= full_window_days(data, horizon_days)


def event_labels(trailing: object, future: object, config: Config) -> tuple[np.ndarray, np.ndarray]:
    """Decline and growth events of each account over the horizon (see ``Events``)."""
    trailing = np.clip(np.asarray(trailing, dtype=float), 0.0, None)
    future = np.asarray(future, dtype=float)
    decline = (trailing > 0) & (future < config.events.decline_ratio * trailing)
    growth = future > config.events.growth_ratio * trailing
    return decline, growth


def fit_event_models(data: TrainingData, config: Config) -> tuple[GBMClassifier, GBMClassifier] | None:
    """Decline and growth classifiers on the stacked rows; None if they cannot be fitted.

    Only cutoffs with a whole horizon of log before them are used: at an earlier
    cutoff the trailing window is cut short by the start of the log, every account
    looks as if it grew, and a classifier learns that artefact (on a 15-month log its
    growth AUC was 0.50). With no such cutoff the model falls back to the probabilistic
    model: its chance of decline (:meth:`ProbabilisticLTV.event_probabilities`) and the
    growth curve of :func:`keyltv.models.bundle.fallback_event_scores`.
    """
    if data.stacked_X is None:
        return None
    X, y = data.stacked_X, data.stacked_y
    if data.first_date is not None:
        needed = full_window_days(data, config.horizon_days)
        whole = (X["cutoff"] >= pd.Timestamp(data.first_date + timedelta(days=needed)))
        X, y = X[whole.to_numpy()], y[whole.to_numpy()]
    if X.empty:
        return None
    decline, growth = event_labels(X["trailing_value"], y["value"], config)
    # Decline is only defined where there is trailing value to lose.
    had_value = X["trailing_value"].to_numpy() > 0
    try:
        return (
            GBMClassifier(random_state=config.seed).fit(X[had_value], decline[had_value]),
            # Growth needs a purchase, ever less likely the longer an account has been
            # idle, beyond what the training cutoffs saw (see GBMClassifier).
            GBMClassifier(idle_fade_days=config.horizon_days, random_state=config.seed
                          ).fit(X, growth),
        )
    except ValueError:
        return None
