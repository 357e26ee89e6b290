"""The naive peer: an account's next horizon is worth what its last one was."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from keyltv.models._frames import require_columns, require_finite


class TrailingValueRegressor(RegressorMixin, BaseEstimator):
    """Predict the value of the trailing horizon (``trailing_value``), floored at 0.

    This is what a data scientist gets in ten minutes; every other model must beat it.

    A missing trailing value predicts 0: it is read as nothing bought in the window,
    which is what the feature query writes for such an account (and how the
    run-rate offset of :class:`~keyltv.models.gbm.GBMRegressor` reads it). An
    infinite one is a ValueError, at fit and at predict time.

    Parameters
    ----------
    column : str, default="trailing_value"
        Feature holding the value of the last horizon before the cutoff.
    """

    def __init__(self, *, column: str = "trailing_value") -> None:
        self.column = column

    def fit(self, X: pd.DataFrame, y: object = None) -> TrailingValueRegressor:
        """Check that ``X`` has a usable trailing-value column; nothing is learned.

        Parameters
        ----------
        X : pandas.DataFrame
            Features with the ``column`` feature.
        y : ignored
            Accepted for the scikit-learn contract (``fit(X, y)``) and not read: the
            prediction is the feature itself.
        """
        self._values(X)
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Trailing value per account, negative nets (returns) and missing values at 0."""
        check_is_fitted(self)
        return np.clip(np.nan_to_num(self._values(X), nan=0.0), 0.0, None)

    def _values(self, X: pd.DataFrame) -> np.ndarray:
        require_columns(X, [self.column], type(self).__name__)
        require_finite(X, [self.column], type(self).__name__, missing_ok=True)
        return X[self.column].to_numpy(dtype=float)
