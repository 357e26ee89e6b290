"""LightGBM classifier of account events (decline, growth) on per-account features.

It shares the frame preparation and early stopping of the value model
(:class:`keyltv.models.gbm._LGBMBase`); the bundle carries one per event.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from keyltv.models._frames import require_columns
from keyltv.models.gbm import _LGBMBase, idle_fade


class GBMClassifier(ClassifierMixin, _LGBMBase):
    """LightGBM classifier of an account event (decline, growth) over the horizon.

    Event labels are noisy (an account one order short of the threshold is a
    non-event), and a fixed 200 trees over-fitted them: the trees stop where the
    log-loss of a held-out fifth of the accounts stops falling (see
    :meth:`~keyltv.models.gbm._LGBMBase._fit_lgbm`). In ``bench-accuracy`` this raised decline AUC by
    0.007-0.028 over the fixed size at every simulator origin where they run.

    For the same reason the trees are smaller, slower and need more rows per leaf than
    the value model's: with 15 leaves, 100 rows per leaf and a 0.03 learning rate
    instead of 31, 40 and 0.05, the mean decline AUC over eight simulator origins rose
    by 0.005 (seed 7) and 0.004 (seed 11), the growth AUC by 0.001 and 0.002 (ad hoc).

    Parameters
    ----------
    n_estimators : int, default=1000
        Most trees; early stopping kept 51-92 in ad-hoc runs on the simulator (at the
        earlier learning rate of 0.05).
    learning_rate : float, default=0.03
    num_leaves : int, default=15
    min_child_samples : int, default=100
        LightGBM capacity, smaller than :class:`~keyltv.models.gbm.GBMRegressor`'s (see above).
    idle_fade_days : int, optional
        Start each row's odds lower by a factor e for every ``idle_fade_days`` beyond the
        first without an order (:func:`keyltv.models.gbm.idle_fade` on the logit
        scale), so that the chance of an event that needs a purchase keeps falling for
        accounts idle longer than any at the training cutoffs, whose trees end in the
        longest-idle leaf. The growth classifier gets the horizon (stop 23: in
        ``bench-accuracy``, seed 7, growth AUC higher at all eight four-year origins, by
        0.002-0.010, mean +0.005); the decline classifier learns only from accounts
        with trailing value, none of them idle that long. None: every row starts from
        the mean.
    early_stopping_rounds, validation_fraction, random_state, n_jobs
        As in :class:`~keyltv.models.gbm.GBMRegressor`.

    Attributes
    ----------
    n_trees_ : int
        Trees of the fitted model.
    start_logit_ : float
        With ``idle_fade_days``, the logit every row starts from before its fade: 0,
        where the trees learn the event rate, or that rate's logit when no tree could
        split (too few rows), so that such a model predicts the rate.
    """

    def __init__(self, *, n_estimators: int = 1000, learning_rate: float = 0.03,
                 num_leaves: int = 15, min_child_samples: int = 100,
                 idle_fade_days: int | None = None,
                 early_stopping_rounds: int | None = 50, validation_fraction: float = 0.2,
                 random_state: int = 0, n_jobs: int = 2) -> None:
        self.n_estimators = n_estimators
        self.idle_fade_days = idle_fade_days
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.early_stopping_rounds = early_stopping_rounds
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X: pd.DataFrame, y: object) -> GBMClassifier:
        """Fit on features ``X`` and binary events ``y``; needs exactly two classes.

        The labels keep their type (``predict`` returns bools for bool events), as
        scikit-learn's classifiers do; the second of the sorted classes is the event.
        """
        if getattr(self, "idle_fade_days", None) is not None:
            require_columns(X, ["days_since_last_order"], type(self).__name__)
        frame = self._prepare(X, fit=True)
        labels = np.asarray(y)
        if labels.ndim != 1 or len(labels) != len(X):
            raise ValueError(f"y must be one label per row of X ({len(X)}), got shape {labels.shape}")
        if pd.isna(labels).any():
            raise ValueError("y has missing labels; every training row needs its event")
        self.classes_, target = np.unique(labels, return_inverse=True)
        if len(self.classes_) != 2:
            raise ValueError("the training events need exactly two classes, got "
                             f"{self.classes_.tolist()}")
        self.start_logit_ = 0.0
        start = self._start(frame)
        self.model_ = self._fit_lgbm(lgb.LGBMClassifier, "binary", X.index, frame, target,
                                     init_score=start)
        if start is not None and not self._split():
            # The fading start replaces LightGBM's start from the event rate (it takes no
            # init_score and boost_from_average together). Where the trees split, the
            # first ones learn the rate; a book too small for any split (under
            # min_child_samples rows a leaf) scored every active account 0.5, exactly
            # the high-potential threshold, where its events happened at 0.17 (audit
            # 28). Such a model predicts the rate, faded for idle time. Starting every
            # model from the rate was measured and not kept: in bench-accuracy (three
            # seeds) growth AUC moved by -0.003 to +0.003 (mean -0.0001), but the best
            # high-potential recall at precision 0.5 fell at 15 of 27 origins (mean
            # 0.523 -> 0.513) and the flag's goal missed at one (recall 0.310 -> 0.286).
            rate = float(np.mean(target))
            self.start_logit_ = float(np.log(rate / (1.0 - rate)))
        return self

    def _split(self) -> bool:
        """Whether any tree of the fitted model splits (a one-leaf tree adds 0 to its start)."""
        trees = self.model_.booster_.dump_model()["tree_info"]
        return any(tree["num_leaves"] > 1 for tree in trees)

    def _start(self, frame: pd.DataFrame) -> np.ndarray | None:
        """Each row's starting logit with ``idle_fade_days``, else None (the mean)."""
        days = getattr(self, "idle_fade_days", None)  # None in a model pickled before it
        if days is None:
            return None
        # 0 in a model pickled before the start took the event rate (it was fitted so).
        return getattr(self, "start_logit_", 0.0) + np.log(
            idle_fade(frame["days_since_last_order"], days))

    def _proba(self, frame: pd.DataFrame) -> np.ndarray:
        start = self._start(frame)
        if start is None:
            return self.model_.predict_proba(frame)
        event = 1.0 / (1.0 + np.exp(-(self.model_.predict(frame, raw_score=True) + start)))
        return np.column_stack([1.0 - event, event])

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Probabilities of [no event, event], shape ``(len(X), 2)``."""
        check_is_fitted(self, "model_")
        return self._predict_batched(X, self._proba, width=len(self.classes_))

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per-row contributions on the logit scale (see :meth:`_LGBMBase.contributions`).

        With ``idle_fade_days`` the fading start counts on ``days_since_last_order`` and
        the event rate's logit on ``bias``, so that the columns still add up to the logit.
        """
        out = super().contributions(X)
        start = self._start(self._prepare(X, fit=False)) if len(X) else None
        if start is not None:
            # The event rate's logit is where every row starts: the bias, as LightGBM's
            # own start from the rate is; the fade is the idle time's.
            base = getattr(self, "start_logit_", 0.0)
            out["bias"] += base
            out["days_since_last_order"] += start - base
        return out

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Most likely class."""
        check_is_fitted(self, "model_")
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
