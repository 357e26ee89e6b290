"""LightGBM value models on per-account features.

The hybrid is in :mod:`keyltv.models.hybrid`, and the event classifier, which shares
:class:`_LGBMBase` with the regressor, in :mod:`keyltv.models.events`.

Value is zero for many accounts and heavy-tailed for the rest, so the regressor uses a
Tweedie objective (a compound Poisson-gamma: a point mass at zero plus a skewed
positive part) rather than squared error, which would chase the largest accounts.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from keyltv.data.schema import as_horizon
from keyltv.models._frames import require_columns, require_finite

# Bookkeeping columns that travel with stacked training frames but are not features.
NON_FEATURES = ("cutoff",)
# Features that only the event classifiers (keyltv.models.events) learn from. The year's
# order rhythm raised their growth AUC at 20 of the 24 four-year simulator origins of
# three seeds (mean +0.004; decline +0.001), but in the value models it moved the Gini
# lead by +0.0002 on average and made decile MAPE worse at 16 of 24 (mean 0.16 -> 0.20;
# bench-accuracy, stop 27), so they leave it out.
EVENT_ONLY_FEATURES = ("rhythm_365d",)
# Rows per prediction batch: the prepared copy and LightGBM's float matrix exist for one
# batch at a time, so the memory of scoring does not grow with the book.
PREDICT_BATCH_ROWS = 250_000
# Trees of a model when too few accounts are left to hold some out for early stopping.
FALLBACK_TREES = 100
# Above this many training rows the early-stopped model is kept instead of refitted on
# every row (at 20M lines the refits made `train` 20% slower).
REFIT_MAX_ROWS = 100_000


class _LGBMBase(BaseEstimator):
    """Shared frame preparation: column order and stable categorical levels.

    Missing feature values (NaN) are allowed, at fit and at predict time: LightGBM
    learns at every split which side they go to, which is what a feature such as
    ``gap_cv`` (undefined below three orders) or an account without attributes needs.
    Infinite values are refused (ValueError naming the column): a tree would read
    them as the largest value seen.
    """

    # Columns of the feature table this model does not learn from, beside NON_FEATURES.
    _left_out: tuple[str, ...] = ()

    def _prepare(self, X: pd.DataFrame, *, fit: bool) -> pd.DataFrame:
        require_columns(X, [], type(self).__name__)
        if fit:
            skipped = (*NON_FEATURES, *self._left_out)
            self.feature_names_in_ = np.asarray(
                [c for c in X.columns if c not in skipped], dtype=object
            )
            self.n_features_in_ = len(self.feature_names_in_)
            self.categories_ = {
                c: sorted(X[c].dropna().astype(str).unique())
                for c in self.feature_names_in_
                if not pd.api.types.is_numeric_dtype(X[c])
            }
        require_columns(X, list(self.feature_names_in_), type(self).__name__)
        frame = X[list(self.feature_names_in_)].copy()
        for column, levels in self.categories_.items():
            # Same levels at fit and predict time: an unseen level becomes missing.
            values = frame[column].astype("string")
            frame[column] = pd.Categorical(values.where(values.isin(levels)), categories=levels)
        numeric = [c for c in frame.columns if c not in self.categories_]
        frame[numeric] = frame[numeric].astype(float)
        require_finite(frame, numeric, type(self).__name__, missing_ok=True)
        return frame

    def _predict_batched(self, X: pd.DataFrame, predict, width: int | None = None) -> np.ndarray:
        """``predict`` on the prepared frame, :data:`PREDICT_BATCH_ROWS` rows at a time.

        ``width`` is the number of values per row (None: one), for the empty result of
        a frame without rows, which LightGBM itself refuses to predict on.
        """
        if len(X) == 0:
            self._prepare(X, fit=False)  # the same column checks as for a full frame
            return np.empty((0,) if width is None else (0, width))
        if len(X) <= PREDICT_BATCH_ROWS:
            return predict(self._prepare(X, fit=False))
        return np.concatenate([
            predict(self._prepare(X.iloc[start:start + PREDICT_BATCH_ROWS], fit=False))
            for start in range(0, len(X), PREDICT_BATCH_ROWS)
        ])

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per-row feature contributions (TreeSHAP on the link scale), plus ``bias``.

        The link is log for the Tweedie regressor and logit for the classifiers, so a
        contribution reads as "pushes the prediction up or down by this factor/odds".
        """
        check_is_fitted(self, "model_")
        frame = self._prepare(X, fit=False)
        columns = [*frame.columns, "bias"]
        values = self.model_.predict(frame, pred_contrib=True) if len(frame) else \
            np.empty((0, len(columns)))
        return pd.DataFrame(values, index=X.index, columns=columns)

    def _fit_lgbm(self, lgbm_class: type, objective: str, index: pd.Index, frame: pd.DataFrame,
                  target: np.ndarray, sample_weight: np.ndarray | None = None,
                  init_score: np.ndarray | None = None) -> object:
        """Fit LightGBM with as many trees as early stopping on held-out accounts keeps.

        A fifth of the accounts (all their rows, by a hash of the index: the stacked
        cutoffs repeat an account, and its other rows in the fitting part would flatter
        the held-out loss) stops the trees where its loss stops falling. Below
        :data:`REFIT_MAX_ROWS` rows the model is then refitted on every row with that
        many trees, scaled up for the added fifth; above it the early-stopped model is
        kept, since a fifth fewer rows changes little there and a refit costs as much
        again. ``init_score`` is each row's starting point on the link scale (the
        boosting learns the rest). Sets ``n_trees_``.

        Raises
        ------
        ValueError
            With fewer than two rows: LightGBM's row sample of one row is empty, and it
            failed with its own ``Check failed: (num_data) > (0)`` (audit 28).
        """
        if len(target) < 2:
            raise ValueError(f"{type(self).__name__}: needs at least 2 training rows, "
                             f"got {len(target)}")
        if self.early_stopping_rounds is not None:
            held = self._held_out(index, target)
            if held is not None:
                stopper = self._early_stopped(lgbm_class, objective, frame, target,
                                              sample_weight, held, init_score)
                best = stopper.best_iteration_ or self.n_estimators
                if len(target) > REFIT_MAX_ROWS:
                    self.n_trees_ = best
                    return stopper
                self.n_trees_ = int(min(self.n_estimators,
                                        max(1, round(best / (1 - self.validation_fraction)))))
            else:
                self.n_trees_ = min(self.n_estimators, FALLBACK_TREES)
        else:
            self.n_trees_ = self.n_estimators
        model = lgbm_class(objective=objective, **{**self._params(), "n_estimators": self.n_trees_})
        return model.fit(frame, target, sample_weight=sample_weight, init_score=init_score)

    def _held_out(self, index: pd.Index, target: np.ndarray) -> np.ndarray | None:
        """Rows of the held-out accounts; None when too few are left to hold some out."""
        # The seed keys the hash; None (scikit-learn's "unseeded") and a RandomState
        # draw one, as they would for any other random choice.
        seed = check_random_state(self.random_state).randint(2**31) \
            if not isinstance(self.random_state, (int, np.integer)) else int(self.random_state)
        keys = pd.util.hash_pandas_object(pd.Series(index.astype(str)), index=False,
                                          hash_key=f"{seed:016d}"[-16:])
        held = (keys.to_numpy() % 1000) < self.validation_fraction * 1000
        if held.all() or not held.any() or len(np.unique(target[~held])) < 2:
            return None
        return held

    def _early_stopped(self, lgbm_class: type, objective: str, frame: pd.DataFrame,
                       target: np.ndarray, sample_weight: np.ndarray | None,
                       held: np.ndarray, init_score: np.ndarray | None = None) -> object:
        fitting = ~held
        weights = (None, None) if sample_weight is None else \
            (np.asarray(sample_weight)[fitting], [np.asarray(sample_weight)[held]])
        scores = (None, None) if init_score is None else (init_score[fitting], [init_score[held]])
        stopper = lgbm_class(objective=objective, **self._params())
        return stopper.fit(frame[fitting], target[fitting], sample_weight=weights[0],
                           init_score=scores[0], eval_X=frame[held], eval_y=target[held],
                           eval_sample_weight=weights[1], eval_init_score=scores[1],
                           callbacks=[lgb.early_stopping(self.early_stopping_rounds,
                                                         verbose=False)])

    def _params(self) -> dict[str, object]:
        return {
            "n_estimators": self.n_estimators,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "subsample": 0.8,
            "subsample_freq": 1,
            "colsample_bytree": 0.8,
            "reg_lambda": 1.0,
            "random_state": self.random_state,
            "n_jobs": self.n_jobs,
            "verbose": -1,
            # Same results on every run and machine: no thread-order effects.
            "deterministic": True,
            "force_row_wise": True,
        }


class GBMRegressor(RegressorMixin, _LGBMBase):
    """LightGBM regressor of value over the horizon.

    Parameters
    ----------
    objective : str, default="tweedie"
        LightGBM objective; ``tweedie`` suits zero-inflated heavy-tailed value.
    n_estimators : int, default=2000
        Most trees; early stopping (below) kept 66-159 in ad-hoc runs on CDNOW and the
        simulator.
    learning_rate, num_leaves, min_child_samples
        LightGBM capacity; defaults chosen to be robust rather than tuned to one data set.
    early_stopping_rounds : int or None, default=50
        Trees without improvement of the held-out loss before stopping (see
        :meth:`_LGBMBase._fit_lgbm`); None fits ``n_estimators`` trees. A fixed 300
        trees over-fitted the stacked rows of a few thousand accounts (CDNOW: decile
        MAPE 0.45, 0.27 with early stopping), and the two fits cost about what the
        300 trees did.
    validation_fraction : float, default=0.2
        Share of accounts held out to stop.
    run_rate_offset : bool, default=False
        Start the boosting of every row from the log of its run rate (see
        :func:`run_rate`) instead of from the overall mean, so that the trees learn a
        multiplier of the account's own recent value. Trees cannot extrapolate: from
        the mean, the largest and fastest-growing accounts get the mean value of a
        leaf of smaller ones (in an ad-hoc diagnostic on the simulator the growing
        accounts, 54% of the future value, got 46% of the predicted value). Needs the
        ``trailing_value`` and ``tenure_days`` features and an objective with a log
        link (Tweedie, Poisson, gamma). A missing ``trailing_value`` counts as 0 and a
        missing ``tenure_days`` as a full horizon (see :func:`run_rate`), so such a row
        starts from the floor below, as an account with nothing in its window does.
    horizon_days : int, default=365
        Horizon of ``trailing_value``, for :func:`run_rate`.
    random_state : int, default=0
        Seed for row and column subsampling and for the held-out accounts.
    n_jobs : int, default=2
        Threads.

    Attributes
    ----------
    n_trees_ : int
        Trees of the fitted model.
    offset_floor_ : float
        With ``run_rate_offset``: added to the run rate before the log, so that an
        account without recent value starts from a small value, not from minus infinity
        (:data:`OFFSET_FLOOR` x the mean target).
    offset_mean_ : float
        With ``run_rate_offset``: mean offset of the training rows (the ``bias`` part of
        it in :meth:`contributions`).
    offset_fade_days_ : int
        With ``run_rate_offset``: time constant of :func:`idle_fade`, by which the floor
        falls for an account a horizon or more without an order (the horizon). Absent
        from a model fitted before stop 23, whose floor does not fade.
    """

    _left_out = EVENT_ONLY_FEATURES

    def __init__(self, *, objective: str = "tweedie", n_estimators: int = 2000,
                 learning_rate: float = 0.05, num_leaves: int = 31, min_child_samples: int = 40,
                 early_stopping_rounds: int | None = 50, validation_fraction: float = 0.2,
                 run_rate_offset: bool = False, horizon_days: int = 365,
                 random_state: int = 0, n_jobs: int = 2) -> None:
        self.objective = objective
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.early_stopping_rounds = early_stopping_rounds
        self.validation_fraction = validation_fraction
        self.run_rate_offset = run_rate_offset
        self.horizon_days = horizon_days
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X: pd.DataFrame, y: object, sample_weight: object = None) -> GBMRegressor:
        """Fit on features ``X`` and non-negative value ``y`` (negatives are floored).

        ``X``'s index is the account id: early stopping holds out whole accounts by a
        hash of it (rows of one account stacked from several cutoffs stay together).

        Raises
        ------
        ValueError
            If ``y`` is not one finite value per row of ``X``, or has no positive value
            (nothing to learn; LightGBM's Tweedie objective fails on a zero total), or
            a feature is infinite. The message says which, so that a backtest can
            report the model as skipped.
        """
        frame = self._prepare(X, fit=True)
        target = self._value_target(X, y)
        offset = None
        if self.run_rate_offset:
            # A horizon of 0 or less scaled every run rate to NaN (audit 28).
            as_horizon(self.horizon_days)
            if self.objective not in LOG_LINK_OBJECTIVES:
                raise ValueError(f"run_rate_offset needs an objective with a log link "
                                 f"({', '.join(LOG_LINK_OBJECTIVES)}), got {self.objective!r}")
            require_columns(X, list(RUN_RATE_INPUTS), type(self).__name__)
            self.offset_floor_ = OFFSET_FLOOR * max(float(target.mean()), 1e-9)
            self.offset_fade_days_ = self.horizon_days
            offset = self._offset(frame)
            self.offset_mean_ = float(offset.mean())
        self.model_ = self._fit_lgbm(lgb.LGBMRegressor, self.objective, X.index, frame, target,
                                     sample_weight, offset)
        return self

    def _value_target(self, X: pd.DataFrame, y: object) -> np.ndarray:
        """``y`` as one non-negative float per row of ``X``, with some positive value."""
        owner, target = type(self).__name__, np.asarray(y, dtype=float)
        if target.ndim != 1 or len(target) != len(X):
            raise ValueError(f"{owner}: y must be one value per row of X ({len(X)}), "
                             f"got shape {target.shape}")
        if not np.isfinite(target).all():
            raise ValueError(f"{owner}: y must be one finite value per row; got "
                             f"{int((~np.isfinite(target)).sum())} missing or infinite")
        target = np.clip(target, 0.0, None)
        if not (target > 0).any():
            raise ValueError(f"{owner}: y has no positive value in its {len(target)} rows "
                             "(negatives count as 0); there is no value to learn from")
        return target

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Predicted value per account, >= 0 (an empty array for a frame without rows)."""
        check_is_fitted(self, "model_")
        return np.clip(self._predict_batched(X, self._predict_frame), 0.0, None)

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per-row contributions as in :meth:`_LGBMBase.contributions`.

        With the run-rate offset, the offset is split into its training mean (in
        ``bias``) and this row's deviation from it (in ``trailing_value``), so that the
        columns still add up to the log prediction and an account's own recent value
        shows as a driver.
        """
        out = super().contributions(X)
        if getattr(self, "run_rate_offset", False):
            offset = self._offset(X)  # run_rate reads the two columns as floats itself
            # What the fading floor takes off is the idle time's doing, not the value's.
            faded = offset - self._offset(X, fade=False)
            idle = "days_since_last_order" if "days_since_last_order" in out else "trailing_value"
            out["trailing_value"] += offset - faded - self.offset_mean_
            out[idle] += faded
            out["bias"] += self.offset_mean_
        return out

    def _predict_frame(self, frame: pd.DataFrame) -> np.ndarray:
        # getattr: a model pickled before the offset existed has no such attribute.
        if not getattr(self, "run_rate_offset", False):
            return self.model_.predict(frame)
        # Tweedie's link is the log: the offset adds on the raw score.
        return np.exp(self.model_.predict(frame, raw_score=True) + self._offset(frame))

    def _offset(self, frame: pd.DataFrame, fade: bool = True) -> np.ndarray:
        rate = run_rate(frame["trailing_value"], frame["tenure_days"], self.horizon_days)
        floor = self.offset_floor_
        days = getattr(self, "offset_fade_days_", None)  # None: fitted before stop 23
        if fade and days is not None:
            floor = floor * idle_fade(frame["days_since_last_order"], days)
        return np.log(rate + floor)


# Features the run-rate offset reads.
RUN_RATE_INPUTS = ("trailing_value", "tenure_days", "days_since_last_order")
# LightGBM objectives whose raw score is the log of the prediction.
LOG_LINK_OBJECTIVES = ("tweedie", "poisson", "gamma")
# The offset's floor, as a share of the mean training target: small enough that a
# quiet account starts far below an active one, large enough that the trees need
# not climb from log(0). Floors of 0.01, 0.05, 0.2 and 0.5 gave Gini leads within
# 0.0005 of each other on the simulator (ad hoc).
OFFSET_FLOOR = 0.05
# Shortest history annualized in full: a first order a week ago is not a run rate.
MIN_RUN_RATE_DAYS = 30


def idle_fade(days_since_last_order: object, horizon_days: int) -> np.ndarray:
    """How far the offset's floor has faded: ``exp(-(idle days beyond a horizon) / horizon)``.

    1 for an account with an order in the last horizon (and where the days are
    missing), ``1/e`` two horizons after its last order, ``1/e^2`` three horizons after.

    Why: an account without value in the trailing window starts from the floor, and the
    trees learn how likely it is to come back from its idle time. They cannot
    extrapolate: the training cutoffs lie a horizon and more before the deployment
    cutoff, with less log before them, so nobody there had been idle as long as the
    longest-idle accounts at scoring, and those got the value of the longest-idle leaf.
    In an ad-hoc breakdown by idle time of the backtest at ``bench-accuracy``'s seed 11,
    `base` 2023-07-03 origin (one-year horizon), LightGBM predicted 361-383 for accounts
    idle 545-1095 days that bought 0-15 on average; with the floor fading from the end
    of the first horizon, 125-195. The time constant of one horizon is a choice, not a
    fit (stop 23, not tuned); within the idle times the training cutoffs saw, the trees
    still set the level.

    Examples
    --------
    >>> idle_fade([30, 365, 730, None], 365).round(3).tolist()
    [1.0, 1.0, 0.368, 1.0]
    """
    days = np.nan_to_num(np.asarray(days_since_last_order, dtype=float), nan=0.0)
    return np.exp(-np.clip(days - horizon_days, 0.0, None) / horizon_days)


def run_rate(trailing_value: object, tenure_days: object, horizon_days: int) -> np.ndarray:
    """Trailing value scaled to a full horizon for accounts younger than one, >= 0.

    An account acquired four months ago shows four months of value in a twelve-month
    trailing window; its run rate is three times that. Younger than
    :data:`MIN_RUN_RATE_DAYS`, an account counts as that old.

    A missing trailing value counts as 0 (what the feature query writes for an account
    with nothing in the window), a missing tenure as a full horizon (no scaling up),
    so the rate is always finite; an infinite input is a ValueError.

    Examples
    --------
    >>> run_rate([1200.0, 100.0, -5.0], [730, 91.25, 400], 365).round(1).tolist()
    [1200.0, 400.0, 0.0]
    """
    value = np.asarray(trailing_value, dtype=float)
    days = np.asarray(tenure_days, dtype=float)
    for name, values in (("trailing_value", value), ("tenure_days", days)):
        if np.isinf(values).any():
            raise ValueError(f"run_rate: {name} has {int(np.isinf(values).sum())} infinite "
                             "value(s)")
    value = np.clip(np.nan_to_num(value, nan=0.0), 0.0, None)
    days = np.clip(np.nan_to_num(days, nan=horizon_days), MIN_RUN_RATE_DAYS, horizon_days)
    return value * horizon_days / days


def __getattr__(name: str) -> object:
    """Classes that lived here: the pickles of earlier models name them so.

    ``HybridRegressor`` moved to :mod:`keyltv.models.hybrid` and ``GBMClassifier`` to
    :mod:`keyltv.models.events`; importing them from there at the top of this module
    would be circular (they subclass :class:`GBMRegressor` and :class:`_LGBMBase`).
    """
    if name == "HybridRegressor":
        from keyltv.models.hybrid import HybridRegressor

        return HybridRegressor
    if name == "GBMClassifier":
        from keyltv.models.events import GBMClassifier

        return GBMClassifier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
