"""The naive peer: an account's next horizon is worth what its last one was."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from keyltv.models._frames import require_columns


class TrailingValueRegressor(RegressorMixin, BaseEstimator):
    """Predict the value of the trailing horizon (``trailing_value``), floored at 0.

    This is what a data scientist gets in ten minutes; every other model must beat it.

    Parameters
    ----------
    column : str, default="trailing_value"
        Feature holding the value of the last horizon before the cutoff.
    """

    def __init__(self, *, column: str = "trailing_value") -> None:
        self.column = column

    def fit(self, X: pd.DataFrame, y: object = None) -> TrailingValueRegressor:
        """Check that ``X`` has the trailing-value column; nothing is learned."""
        require_columns(X, [self.column], type(self).__name__)
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Trailing value per account, negative nets (returns) floored at 0."""
        check_is_fitted(self)
        require_columns(X, [self.column], type(self).__name__)
        return np.clip(X[self.column].to_numpy(dtype=float), 0.0, None)
