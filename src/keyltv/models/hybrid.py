"""LightGBM with the probabilistic model's outputs as extra inputs (the ``hybrid`` model)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from keyltv.models._frames import require_columns
from keyltv.models.gbm import GBMRegressor
from keyltv.models.probabilistic import ProbabilisticLTV, check_inputs


class HybridRegressor(GBMRegressor):
    """GBM whose inputs include the probabilistic model's outputs.

    During ``fit`` one BG/NBD + Gamma-Gamma model is fitted per training cutoff (the
    ``cutoff`` column) on that cutoff's accounts only, so no row sees its own future.
    The model of the latest cutoff is kept for prediction: scoring never refits.

    Parameters
    ----------
    kind : {"bgnbd", "mbgnbd", "pareto"}, default="bgnbd"
        Probabilistic model providing the extra inputs.
    horizon_days : int, default=365
        Horizon of the probabilistic inputs (and of the run-rate offset).
    **GBMRegressor parameters
    """

    PROB_COLUMNS = ("prob_value", "prob_orders", "prob_p_alive")

    def __init__(self, *, kind: str = "bgnbd", horizon_days: int = 365,
                 objective: str = "tweedie", n_estimators: int = 2000,
                 learning_rate: float = 0.05, num_leaves: int = 31, min_child_samples: int = 40,
                 early_stopping_rounds: int | None = 50, validation_fraction: float = 0.2,
                 run_rate_offset: bool = False, random_state: int = 0, n_jobs: int = 2) -> None:
        super().__init__(objective=objective, n_estimators=n_estimators,
                         learning_rate=learning_rate, num_leaves=num_leaves,
                         min_child_samples=min_child_samples,
                         early_stopping_rounds=early_stopping_rounds,
                         validation_fraction=validation_fraction,
                         run_rate_offset=run_rate_offset, horizon_days=horizon_days,
                         random_state=random_state, n_jobs=n_jobs)
        self.kind = kind

    def fit(self, X: pd.DataFrame, y: object, sample_weight: object = None) -> HybridRegressor:
        """Fit one probabilistic model per cutoff, then the GBM on the enriched frame.

        ``X`` needs the probabilistic model's inputs, finite in every row (see
        :func:`~keyltv.models.probabilistic.check_inputs`): a cutoff whose model could
        not be fitted for want of them would otherwise leave its inputs missing, as
        for a cutoff without repeat buyers, without a word.
        """
        require_columns(X, [], type(self).__name__)
        self._value_target(X, y)  # before the probabilistic fits, which take a while
        check_inputs(X, type(self).__name__)
        ProbabilisticLTV(kind=self.kind, horizon_days=self.horizon_days).check_params()
        groups = X["cutoff"].to_numpy() if "cutoff" in X.columns else np.zeros(len(X))
        enriched = X.copy()
        for group in np.unique(groups):  # sorted: the last one is the latest cutoff
            rows = groups == group
            prob = ProbabilisticLTV(kind=self.kind, horizon_days=self.horizon_days)
            try:
                prob.fit(X[rows])
            except ValueError:
                prob = None  # no repeat buyer at this cutoff: the inputs stay missing
            enriched.loc[rows, list(self.PROB_COLUMNS)] = _prob_values(X[rows], prob)
            self.prob_model_ = prob
        return super().fit(enriched, y, sample_weight=sample_weight)

    def _prepare(self, X: pd.DataFrame, *, fit: bool) -> pd.DataFrame:
        require_columns(X, [], type(self).__name__)  # a DataFrame, before X.columns
        if not fit and not set(self.PROB_COLUMNS) <= set(X.columns):
            X = _with_prob_columns(X, self.prob_model_)
        return super()._prepare(X, fit=fit)


def _prob_values(X: pd.DataFrame, prob: ProbabilisticLTV | None) -> np.ndarray:
    """Columns ``PROB_COLUMNS`` for ``X`` (NaN when no probabilistic model exists)."""
    if prob is None:
        return np.full((len(X), len(HybridRegressor.PROB_COLUMNS)), np.nan)
    orders = prob.predict_orders(X)
    return np.column_stack([orders * prob.predict_spend(X), orders, prob.predict_p_alive(X)])


def _with_prob_columns(X: pd.DataFrame, prob: ProbabilisticLTV | None) -> pd.DataFrame:
    out = X.copy()
    out[list(HybridRegressor.PROB_COLUMNS)] = _prob_values(X, prob)
    return out
