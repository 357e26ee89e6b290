"""Non-negative blends of value models, weighted on a backtest holdout.

No single model wins everywhere: LightGBM learns trends when the history holds enough
labelled windows, the probabilistic models are steadier when it does not, and on some
books last period's value ranks the largest accounts best. A blend
``sum_m w_m * prediction_m`` with ``w_m >= 0`` can take the best of each, and with one
weight per model it has too few parameters to overfit a holdout of thousands of accounts.

Why Poisson deviance and not least squares: squared error lets the few largest accounts
set the weights, while the Poisson deviance weighs each account's error relative to its
size (value is zero-inflated and heavy-tailed). Its first-order condition also makes the
blended total equal the actual total on the holdout whenever the weights can scale, so
the level of the blend is calibrated as a by-product.

Why not scikit-learn's ``StackingRegressor``: it refits every base model inside its own
cross-validation on rows of one table, while keyltv's base models learn from different
rows (stacked earlier cutoffs, or the cutoff itself) and are already fitted and judged
on a time-based holdout; only the weights are left to fit here.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy.optimize import minimize

__all__ = ["BlendedLTV", "blend", "blend_weights", "cross_fitted_blend"]

# Floor of a blended prediction inside the deviance (the log of zero is undefined).
_EPS = 1e-6


def blend(predictions: pd.DataFrame, weights: Mapping[str, float] | pd.Series) -> np.ndarray:
    """``sum_m w_m * prediction_m`` over the weighted columns, negatives floored at zero."""
    names = list(weights.keys())  # a dict or a Series of weights by model
    return predictions[names].to_numpy(dtype=float).clip(0.0) @ np.array([weights[m] for m in names])


def blend_weights(predictions: pd.DataFrame, actual: object) -> pd.Series:
    """Non-negative weights minimising the Poisson deviance of the blend.

    Parameters
    ----------
    predictions : pandas.DataFrame
        One column per model, one row per holdout account.
    actual : array-like
        Realized value per account; negatives (net returns) are floored at zero.

    Returns
    -------
    pandas.Series
        Weight per model (index: the columns of ``predictions``).
    """
    P = np.clip(predictions.to_numpy(dtype=float), 0.0, None)
    y = np.clip(np.asarray(actual, dtype=float), 0.0, None)
    # Columns are rescaled to the mean of y so that one step size suits every model.
    scale = np.where(P.mean(axis=0) > 0, y.mean() / np.maximum(P.mean(axis=0), 1e-12), 0.0)
    Q = P * scale
    n = max(len(y), 1)

    def deviance(w: np.ndarray) -> tuple[float, np.ndarray]:
        mu = Q @ w + _EPS
        loss = (mu - y * np.log(mu)).sum() / n
        grad = Q.T @ (1.0 - y / mu) / n
        return float(loss), grad

    k = P.shape[1]
    start = np.full(k, 1.0 / k)
    fit = minimize(deviance, start, jac=True, method="L-BFGS-B", bounds=[(0.0, None)] * k)
    return pd.Series(fit.x * scale, index=predictions.columns)


def cross_fitted_blend(predictions: pd.DataFrame, actual: object, *, n_folds: int = 5,
                       seed: int = 0) -> np.ndarray:
    """Out-of-fold blended predictions: each account's weights are fitted without it.

    This is the blend's honest holdout score, comparable with the single models'
    (whose predictions on the holdout involved no fitting on it).
    """
    y = np.asarray(actual, dtype=float)
    folds = np.random.default_rng(seed).permutation(len(y)) % n_folds
    out = np.zeros(len(y))
    for k in range(n_folds):
        test = folds == k
        if not test.any():
            continue
        out[test] = blend(predictions[test], blend_weights(predictions[~test], y[~test]))
    return out


class BlendedLTV:
    """Fitted value models combined with fixed non-negative weights.

    Parameters
    ----------
    components : mapping of str to fitted value model
        Models by name, each with ``predict(features)``.
    weights : mapping of str to float
        Weight per model, as returned by :func:`blend_weights`.
    """

    def __init__(self, components: Mapping[str, object], weights: Mapping[str, float]) -> None:
        missing = sorted(set(weights) - set(components))
        if missing:
            raise ValueError(f"no fitted model for blend weights {missing}")
        self.components = dict(components)
        self.weights = {name: float(w) for name, w in weights.items()}

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Weighted sum of the components' predictions, >= 0."""
        weighted = {name: w for name, w in self.weights.items() if w > 0}
        parts = pd.DataFrame({name: np.asarray(self.components[name].predict(X), dtype=float)
                              for name in weighted}, index=X.index)
        return blend(parts, weighted)

    def get_params(self, deep: bool = False) -> dict[str, float]:
        """Weights by component (``weight_<name>``), for tracking."""
        return {f"weight_{name}": w for name, w in self.weights.items()}

    def explained_component(self) -> object | None:
        """The most heavily weighted component with per-feature contributions, or None.

        The blend itself has no per-feature decomposition: its reasons and feature
        importance come from the tree model that carries the most weight in it.
        """
        explained = [(w, n) for n, w in self.weights.items()
                     if w > 0 and hasattr(self.components[n], "contributions")]
        return self.components[max(explained)[1]] if explained else None

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame | None:
        """Feature contributions of :meth:`explained_component`, or None."""
        component = self.explained_component()
        return component.contributions(X) if component is not None else None

    def __repr__(self) -> str:
        parts = ", ".join(f"{n}={w:.3g}" for n, w in self.weights.items() if w > 0)
        return f"BlendedLTV({parts})"
