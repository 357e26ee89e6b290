"""Non-negative blends of value models, weighted on a backtest holdout.

No single model wins everywhere: LightGBM learns trends when the history holds enough
labelled windows, the probabilistic models are steadier when it does not, and on some
books last period's value ranks the largest accounts best. A blend
``sum_m w_m * prediction_m`` with ``w_m >= 0`` and ``sum_m w_m = 1`` can take the best of
each, and with one
weight per model it has too few parameters to overfit a holdout of thousands of accounts.

Why Poisson deviance and not least squares: squared error lets the few largest accounts
set the weights, while the Poisson deviance weighs each account's error relative to its
size (value is zero-inflated and heavy-tailed).

Why the weights sum to one (in each stratum): the blend mixes its parts and never
rescales them, so its prediction lies between theirs. Free weights also fitted the
level of the holdout, which is a shorter window than the horizon (half of it in
``keyltv train``'s selection backtest) and one season: on a seasonal wholesale log
(an audit at stop 19) weights fitted on a Christmas quarter took the blend's total to
2.4x the truth while its parts ranged over 1.35-1.74x, and to 0.47x where they ranged
over 0.83-1.16x. Each part's level comes from its own fit on the whole history.

Why weights per stratum: accounts with an order in the last horizon ("active") and
accounts without one ("idle") are best predicted by different models. The probabilistic
models give a long-idle account a small positive value where the tree models have
learned that idle accounts rarely return, and one set of weights has to trade the two
groups off. In ``bench-accuracy`` the blend on `churn_heavy` at 2023-07-03 (where both
strata are large enough) went from decile MAPE 1.03 to 0.31 with Gini and Spearman a
little higher. A stratum with fewer than :data:`MIN_STRATUM_ACCOUNTS` holdout accounts
or nothing bought in it is not split off: with the floor at 100 instead, three more
simulator origins were split, and the champion's decile MAPE there moved both ways
(0.47 -> 0.09, 0.17 -> 0.61, 0.17 -> 0.38) with Spearman lower at two of them.

Why "idle" is counted in days of the deployed horizon (``idle_days``), not as no value
in the trailing window of the features: the weights are fitted in the selection
backtest, whose horizon (and so trailing window) is half the deployed one. There "idle"
meant half a horizon without value; at scoring it meant a whole one, a smaller and
more dormant group, on which the weights fitted for the other over-predicted. In
``bench-accuracy`` (seed 7, `growth_heavy` at 2024-01-01, 365-day horizon) the idle
accounts' blended mean was 214 against 86 realized (an ad-hoc breakdown of that
origin), and the champion's decile MAPE
0.55 against the best peer's 0.37; with the same ``idle_days`` at both ends it is 0.30
(stop 23; README, Accuracy).

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

__all__ = ["BlendedLTV", "blend", "blend_columns", "blend_weights", "can_stratify",
           "checked_weights", "components_of", "cross_fitted_blend", "is_stratified",
           "stratify"]

# Floor of a blended prediction inside the deviance (the log of zero is undefined).
_EPS = 1e-6
# Weights at or below this are zero: the solver leaves residues of 1e-18..1e-15 on the
# models it excluded (CDNOW's selection blend had four), and each would keep a model
# in the deployed blend, refitted at train and run at every score, for nothing.
MIN_WEIGHT = 1e-9
# How far the weights of a stratum may sum from one (rounding in a stored mapping).
SUM_TOLERANCE = 1e-6
# Strata of accounts with their own weights, by value in the trailing horizon.
ACTIVE, IDLE = "active", "idle"
MIN_STRATUM_ACCOUNTS = 300
# A stratified weight's key is "<model>.<stratum>" (MLflow keys allow dots).
_SEP = "."


def stratify(features: pd.DataFrame, idle_days: int | None) -> np.ndarray:
    """Stratum of each account: ``active`` or ``idle``.

    Parameters
    ----------
    features : pandas.DataFrame
        Per-account features: ``orders_total`` and ``days_since_last_order``, or
        ``trailing_value`` when ``idle_days`` is None.
    idle_days : int or None
        An account is ``active`` with an order in its last ``idle_days`` days (the
        deployed horizon, at every cutoff: see the module docstring). None: with
        positive value in the features' trailing window, the rule of blends made before
        stop 23, which a stored model keeps.
    """
    if idle_days is None:
        active = np.asarray(features["trailing_value"], dtype=float) > 0
    else:
        active = ((np.asarray(features["orders_total"], dtype=float) > 0)
                  & (np.asarray(features["days_since_last_order"], dtype=float) <= idle_days))
    return np.where(active, ACTIVE, IDLE)


def components_of(weights: Mapping[str, float]) -> list[str]:
    """Model names behind weight keys (``lightgbm.active`` -> ``lightgbm``), in order."""
    return list(dict.fromkeys(key.split(_SEP)[0] for key in weights))


def is_stratified(weights: Mapping[str, float]) -> bool:
    """Whether ``weights`` differ between active and idle accounts."""
    return any(_SEP in key for key in weights)


def blend_columns(predictions: pd.DataFrame, models: list[str],
                  strata: np.ndarray | None = None) -> pd.DataFrame:
    """The columns a blend weighs: one per model, or one per model and stratum.

    A stratified column (``lightgbm.active``) holds the model's prediction in its stratum
    and zero elsewhere, so a weight fitted on it applies to that stratum only; ``strata``
    (from :func:`stratify`, one per row) says which; None: one column per model.
    """
    if strata is None:
        return predictions[models]
    stratum = np.asarray(strata)
    return pd.DataFrame({f"{m}{_SEP}{s}": np.where(stratum == s, predictions[m], 0.0)
                         for s in (ACTIVE, IDLE) for m in models}, index=predictions.index)


def can_stratify(strata: np.ndarray, actual: object) -> bool:
    """Whether both strata are large enough, and bought something, to get own weights."""
    stratum = np.asarray(strata)
    y = np.asarray(actual, dtype=float)
    return all((stratum == s).sum() >= MIN_STRATUM_ACCOUNTS and y[stratum == s].clip(0).sum() > 0
               for s in (ACTIVE, IDLE))


def blend(predictions: pd.DataFrame, weights: Mapping[str, float] | pd.Series) -> np.ndarray:
    """``sum_m w_m * prediction_m`` over the weighted columns, negatives floored at zero."""
    names = list(weights.keys())  # a dict or a Series of weights by model
    return predictions[names].to_numpy(dtype=float).clip(0.0) @ np.array([weights[m] for m in names])


def blend_weights(predictions: pd.DataFrame, actual: object) -> pd.Series:
    """Non-negative weights, summing to one, that minimise the Poisson deviance of the blend.

    Parameters
    ----------
    predictions : pandas.DataFrame
        One column per model, one row per holdout account; or one per model and
        stratum (see :func:`blend_columns`), whose weights then sum to one per stratum.
    actual : array-like
        Realized value per account; negatives (net returns) are floored at zero.

    Returns
    -------
    pandas.Series
        Weight per column of ``predictions``; those at or below :data:`MIN_WEIGHT`
        (the solver's residues) are exactly 0.
    """
    P = np.clip(predictions.to_numpy(dtype=float), 0.0, None)
    y = np.clip(np.asarray(actual, dtype=float), 0.0, None)
    # Money in units of the mean actual, so that one tolerance suits every log (the
    # minimiser of the deviance does not change with the unit).
    unit = y.mean() if y.mean() > 0 else max(P.mean(), 1.0)
    P, y = P / unit, y / unit
    n = max(len(y), 1)

    def deviance(w: np.ndarray) -> tuple[float, np.ndarray]:
        mu = P @ w + _EPS
        loss = (mu - y * np.log(mu)).sum() / n
        grad = P.T @ (1.0 - y / mu) / n
        return float(loss), grad

    groups = _stratum_groups(list(predictions.columns))
    start = np.zeros(P.shape[1])
    for members in groups:
        start[members] = 1.0 / len(members)
    constraints = [{"type": "eq", "fun": lambda w, m=members: w[m].sum() - 1.0,
                    "jac": lambda w, m=members: np.isin(np.arange(len(w)), m).astype(float)}
                   for members in groups]
    fit = minimize(deviance, start, jac=True, method="SLSQP", bounds=[(0.0, 1.0)] * len(start),
                   constraints=constraints, options={"maxiter": 500, "ftol": 1e-12})
    weights = np.clip(fit.x, 0.0, 1.0)
    weights[weights <= MIN_WEIGHT] = 0.0
    for members in groups:  # exact sums despite the solver's tolerance
        weights[members] /= max(weights[members].sum(), 1e-12)
    return pd.Series(weights, index=predictions.columns)


def checked_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """``weights`` as floats without the negligible ones, once checked to be a mixture.

    Every weight is finite and >= 0; keys are all ``<model>`` or all
    ``<model>.<stratum>`` with both strata; the weights of each stratum (of all keys
    when not stratified) sum to one within :data:`SUM_TOLERANCE`, as
    :func:`blend_weights` fits them (the module docstring says why). They are kept
    as given, not rescaled: a sum far from one is a mistake to report, not to
    repair. Weights at or below :data:`MIN_WEIGHT` are then dropped.

    Raises
    ------
    ValueError
        Naming the first weight or stratum that breaks a rule.
    """
    values = {str(key): float(w) for key, w in weights.items()}
    for key, w in values.items():
        if not np.isfinite(w) or w < 0:
            raise ValueError(f"blend weight {key} = {w}: weights must be finite and >= 0")
    keys = list(values)
    strata = [key.split(_SEP, 1)[1] if _SEP in key else "" for key in keys]
    expected = [ACTIVE, IDLE] if is_stratified(values) else [""]
    unknown = [k for k, s in zip(keys, strata, strict=True) if s not in expected]
    if unknown:
        allowed = " or ".join(f"<model>.{s}" for s in expected) if expected != [""] else "<model>"
        raise ValueError(f"blend weight key {unknown[0]!r}: expected {allowed}, "
                         "for every key of one blend")
    for stratum in expected:
        total = sum(w for w, s in zip(values.values(), strata, strict=True) if s == stratum)
        if abs(total - 1.0) > SUM_TOLERANCE:
            which = f"of the {stratum} accounts " if stratum else ""
            raise ValueError(f"blend weights {which}sum to {total:.6g}, not 1: a blend mixes "
                             "its models, it does not rescale them")
    return {key: w for key, w in values.items() if w > MIN_WEIGHT}


def _stratum_groups(columns: list[str]) -> list[list[int]]:
    """Positions of the columns that share a stratum (one group when not stratified)."""
    groups: dict[str, list[int]] = {}
    for i, column in enumerate(columns):
        stratum = column.split(_SEP)[1] if _SEP in column else ""
        groups.setdefault(stratum, []).append(i)
    return list(groups.values())


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

    The blend has no ``fit``: it is made from models and weights fitted elsewhere
    (see ``tracking_params`` for why it is not a scikit-learn estimator), so the
    weights are checked here, when it is made.

    Parameters
    ----------
    components : mapping of str to fitted value model
        Models by name, each with ``predict(features)``. Only those with a weight
        above :data:`MIN_WEIGHT` are kept.
    weights : mapping of str to float
        Weight per model, as returned by :func:`blend_weights` on :func:`blend_columns`:
        keyed by model, or by ``<model>.<stratum>`` for weights per stratum (the
        features must then hold what :func:`stratify` reads). Checked by
        :func:`checked_weights`: finite, >= 0, summing to one (per stratum); weights
        at or below :data:`MIN_WEIGHT` count as 0 and are dropped.
    idle_days : int, optional
        Days without an order after which an account is ``idle`` for stratified
        weights (see :func:`stratify`); None: no value in the trailing window.

    Raises
    ------
    ValueError
        If the weights are no mixture (see :func:`checked_weights`), or a weighted
        model is not in ``components``.
    """

    def __init__(self, components: Mapping[str, object], weights: Mapping[str, float],
                 idle_days: int | None = None) -> None:
        checked = checked_weights(weights)
        missing = sorted(set(components_of(checked)) - set(components))
        if missing:
            raise ValueError(f"no fitted model for blend weights {missing}")
        self.components = {name: components[name] for name in components_of(checked)}
        self.weights = checked
        self.idle_days = idle_days

    def _weighted(self) -> dict[str, float]:
        # A blend pickled before MIN_WEIGHT existed still holds the solver's residues.
        return {key: w for key, w in self.weights.items() if w > MIN_WEIGHT}

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Weighted sum of the components' predictions, >= 0."""
        weighted = self._weighted()
        names = components_of(weighted)
        parts = pd.DataFrame({name: np.asarray(self.components[name].predict(X), dtype=float)
                              for name in names}, index=X.index)
        # A blend pickled before stop 23 has no idle_days: it keeps its trailing-value rule.
        strata = stratify(X, getattr(self, "idle_days", None)) if is_stratified(weighted) \
            else None
        return blend(blend_columns(parts, names, strata), weighted)

    def tracking_params(self) -> dict[str, float]:
        """Weights by component (``weight_<name>``), for tracking.

        Not ``get_params``: the blend is a fitted combination, not a scikit-learn
        estimator, and ``clone`` would try to rebuild it from these.
        """
        params: dict[str, float] = {f"weight_{name}": w for name, w in self.weights.items()}
        if is_stratified(self.weights) and getattr(self, "idle_days", None) is not None:
            params["idle_days"] = self.idle_days
        return params

    def explained_component(self) -> object | None:
        """The most heavily weighted component with per-feature contributions, or None.

        The blend itself has no per-feature decomposition: its reasons and feature
        importance come from the tree model that carries the most weight in it.
        """
        part = self.explained_part()
        return self.components[part[0]] if part is not None else None

    def explained_part(self) -> tuple[str, float] | None:
        """Name and mean weight (over strata) of :meth:`explained_component`, or None.

        So that a plot or a description of the blend's drivers can say whose they are.
        """
        weighted = self._weighted()
        total: dict[str, float] = {}
        for key, w in weighted.items():  # summed over strata
            model = key.split(_SEP)[0]
            total[model] = total.get(model, 0.0) + w
        explained = [(w, n) for n, w in total.items()
                     if w > 0 and hasattr(self.components[n], "contributions")]
        if not explained:
            return None
        weight, name = max(explained)
        strata = max(1, len({key.split(_SEP, 1)[1] for key in weighted if _SEP in key}))
        return name, weight / strata

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame | None:
        """Feature contributions of :meth:`explained_component`, or None."""
        component = self.explained_component()
        return component.contributions(X) if component is not None else None

    def __repr__(self) -> str:
        parts = ", ".join(f"{n}={w:.3g}" for n, w in self._weighted().items())
        return f"BlendedLTV({parts})"
