"""Account-value metrics as small pure functions of (actual, predicted).

Ranking metrics matter most to a key-account team (who gets attention), calibration
metrics to finance (how much value the book holds). Ties in the prediction are shared
fairly: tied accounts count with their mean actual value, so a constant prediction
has a normalized Gini of 0 whatever the row order, up to floating-point rounding
(about 1e-16; :func:`decile_mape` is the exception: its bins must hold whole accounts).

Every metric takes one value per account on each side: arrays are paired by position,
two pandas Series by index label (see :func:`~keyltv.evaluation._aligned.aligned`). A
missing or infinite value is an error, not a row to drop: a metric over the other
accounts would look like the model's score on the whole book.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from keyltv.evaluation._aligned import aligned


def _arrays(actual: object, predicted: object) -> tuple[np.ndarray, np.ndarray]:
    """``actual`` and ``predicted`` as checked float arrays with at least one account."""
    a, p = _vectors(actual=actual, predicted=predicted)
    if len(a) == 0:
        raise ValueError("actual and predicted are empty; a metric needs at least one account")
    return a, p


def _vectors(**values: object) -> list[np.ndarray]:
    """Aligned 1-d float arrays of equal length, each value finite."""
    arrays = [np.asarray(v, dtype=float) for v in aligned(**values)]
    _check_shapes(dict(zip(values, arrays, strict=True)))
    for name, array in zip(values, arrays, strict=True):
        _check_finite(name, array)
    return arrays


def _check_shapes(arrays: dict[str, np.ndarray]) -> None:
    """Raise a ValueError unless every array is 1-d and all have the same length."""
    shapes = [a.shape for a in arrays.values()]
    if any(len(shape) != 1 for shape in shapes) or len(set(shapes)) > 1:
        names = list(arrays)
        listed = ", ".join(names[:-1]) + " and " + names[-1]
        raise ValueError(f"{listed} must be 1-d of equal length, got "
                         f"{', '.join(map(str, shapes[:-1]))} and {shapes[-1]}")


def _check_finite(name: str, values: np.ndarray) -> None:
    bad = int((~np.isfinite(values)).sum())
    if bad:
        raise ValueError(f"{name} has {bad} missing or infinite value(s); "
                         "every account needs a finite value")


def _binary(name: str, values: object) -> np.ndarray:
    """Events as a bool array: bools, or numbers that are all 0 or 1."""
    array = np.asarray(values)
    missing = int(pd.isna(array).sum())
    if missing:
        raise ValueError(f"{name} has {missing} missing value(s); every account needs an event "
                         "(0/1 or bool)")
    kind = pd.api.types.infer_dtype(array.ravel(), skipna=False)
    if kind not in ("boolean", "integer", "floating", "mixed-integer-float", "empty"):
        raise ValueError(f"{name} must be 0/1 or bool, got {kind} values such as "
                         f"{array.ravel().tolist()[0]!r}")
    numbers = array.astype(float)
    other = numbers[(numbers != 0) & (numbers != 1)]
    if len(other):
        raise ValueError(f"{name} must be 0/1 or bool, got {other[0]:g} in {len(other)} row(s)")
    return numbers.astype(bool)


def _events_and_scores(events: object, scores: object) -> tuple[np.ndarray, np.ndarray]:
    """Checked binary events and finite scores, paired as :func:`_vectors` pairs values."""
    events, scores = aligned(events=events, scores=scores)
    e, s = _binary("events", events), np.asarray(scores, dtype=float)
    _check_shapes({"events": e, "scores": s})
    _check_finite("scores", s)
    return e, s


def _gini(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Area between the gain curve of ``predicted`` and the diagonal, x2."""
    order = np.argsort(-predicted, kind="stable")
    p_sorted = predicted[order]
    a_sorted = actual[order]
    # Replace actual values within each tie group by the group mean (fair tie handling).
    _, starts, counts = np.unique(-p_sorted, return_index=True, return_counts=True)
    sums = np.add.reduceat(a_sorted, starts)
    a_fair = np.repeat(sums / counts, counts)
    gain = np.cumsum(a_fair) / a_fair.sum()
    # Trapezoid area under the gain curve is mean(gain) - 1/(2n); the diagonal's is 1/2.
    return float(2.0 * gain.mean() - 1.0 - 1.0 / len(gain))


def normalized_gini(actual: object, predicted: object) -> float:
    """Gini of the prediction's ranking over the Gini of the perfect ranking.

    1 for a perfect ranking, about 0 for a random or constant one, negative when the
    ranking is reversed. NaN when no ranking is better than another: every actual
    value equal (a single account among them), or a total of 0 or less.

    References
    ----------
    Wang, Liu, Miao (2019). A Deep Probabilistic Model for Customer Lifetime Value
    Prediction. arXiv:1912.07753 (google/lifetime_value).
    """
    a, p = _arrays(actual, predicted)
    best = _gini(a, a) if a.sum() > 0 else 0.0
    # All actual values equal: no ranking can be better than another.
    return _gini(a, p) / best if best > 0 else float("nan")


def spearman(actual: object, predicted: object) -> float:
    """Spearman rank correlation (NaN when either side is constant)."""
    a, p = _arrays(actual, predicted)
    if np.ptp(a) == 0 or np.ptp(p) == 0:
        return float("nan")
    return float(spearmanr(a, p).statistic)


def top_share(actual: object, predicted: object, share: float) -> float:
    """Share of total actual value held by the top ``share`` of accounts by prediction.

    Accounts tied with the last one taken count with their mean actual value for the
    places left (the expected share under a random order of the tie), not by row order.
    """
    a, p = _arrays(actual, predicted)
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share}")
    if a.sum() <= 0:
        return float("nan")
    k = max(1, int(round(share * len(a))))
    last = np.sort(p)[::-1][k - 1]
    above, tied = p > last, p == last
    taken = a[above].sum() + (k - above.sum()) * a[tied].mean()
    return float(taken / a.sum())


def decile_mape(actual: object, predicted: object, n_bins: int = 10) -> float:
    """Mean over predicted deciles of ``|mean predicted - mean actual| / mean actual``.

    The accounts are ranked by prediction and cut into ``n_bins`` bins of (nearly)
    equal count: ``pandas.qcut`` of the rank, ``min(n_bins, n)`` bins for fewer
    accounts than bins. Tied predictions are not shared as in the other metrics: they
    are split between bins by row order (bins must hold whole accounts), so with ties
    the value depends on the order of the rows. Bins whose mean actual value is 0 or
    negative (net returns) are skipped, since the relative error is undefined or
    meaningless there; NaN when every bin is skipped.
    """
    if not (isinstance(n_bins, (int, np.integer)) and not isinstance(n_bins, bool)
            and n_bins >= 1):
        raise ValueError(f"n_bins must be a whole number of at least 1, got {n_bins!r}")
    a, p = _arrays(actual, predicted)
    bins = pd.qcut(pd.Series(p).rank(method="first"), q=min(n_bins, len(p)), labels=False)
    frame = pd.DataFrame({"a": a, "p": p, "bin": bins}).groupby("bin")[["a", "p"]].mean()
    frame = frame[frame["a"] > 0]
    return float(((frame["p"] - frame["a"]).abs() / frame["a"]).mean())


def aggregate_ratio(actual: object, predicted: object) -> float:
    """Total predicted over total actual value (1 = the book's value is right)."""
    a, p = _arrays(actual, predicted)
    return float(p.sum() / a.sum()) if a.sum() > 0 else float("nan")


def mae(actual: object, predicted: object) -> float:
    """Mean absolute error per account."""
    a, p = _arrays(actual, predicted)
    return float(np.abs(a - p).mean())


def auc(events: object, scores: object) -> float:
    """ROC AUC of ``scores`` for binary ``events`` (NaN with a single class).

    Raises
    ------
    ValueError
        If ``events`` are not all 0/1 or bool, a value is missing, or there is no account.
    """
    e, s = _events_and_scores(events, scores)
    if len(e) == 0:
        raise ValueError("events and scores are empty; AUC needs at least one account")
    if e.min() == e.max():
        return float("nan")
    return float(roc_auc_score(e, s))


def best_recall_at_precision(events: object, scores: object, precision: float) -> float:
    """Highest recall of "flag the top k by score" whose precision is at least ``precision``.

    The best any threshold on ``scores`` can do for a flag with a precision floor; 0
    when no threshold reaches it, NaN without events (no account at all included:
    :func:`keyltv.evaluation.flags.flag_metrics` asks it about the valuable
    accounts, and a book may have none). ``events`` and ``scores`` are checked as in
    :func:`auc`.
    """
    if not 0 < precision <= 1:  # NaN fails this too
        raise ValueError(f"precision must be in (0, 1], got {precision!r}")
    e, s = _events_and_scores(events, scores)
    if not e.any():
        return float("nan")
    hits = e[np.argsort(-s, kind="stable")]
    true_positives = np.cumsum(hits)
    reached = true_positives / np.arange(1, len(hits) + 1) >= precision
    return float(true_positives[reached].max() / e.sum()) if reached.any() else 0.0


def interval_coverage(actual: object, low: object, high: object) -> float:
    """Share of accounts whose actual value lies in ``[low, high]``."""
    a, lo, hi = _vectors(actual=actual, low=low, high=high)
    if len(a) == 0:
        raise ValueError("actual, low and high are empty; a metric needs at least one account")
    crossed = int((lo > hi).sum())
    if crossed:  # low and high swapped: every account would count as missed
        raise ValueError(f"low is above high for {crossed} account(s); pass (actual, low, high)")
    return float(((a >= lo) & (a <= hi)).mean())


def value_metrics(actual: object, predicted: object) -> dict[str, float]:
    """All value metrics in one dict (the backtest table's columns)."""
    return {
        "normalized_gini": normalized_gini(actual, predicted),
        "spearman": spearman(actual, predicted),
        "top10_share": top_share(actual, predicted, 0.1),
        "top20_share": top_share(actual, predicted, 0.2),
        "decile_mape": decile_mape(actual, predicted),
        "aggregate_ratio": aggregate_ratio(actual, predicted),
        "mae": mae(actual, predicted),
    }


# Direction of each metric, for choosing a champion: +1 higher is better.
HIGHER_IS_BETTER = {
    "normalized_gini": 1, "spearman": 1, "top10_share": 1, "top20_share": 1,
    "decile_mape": -1, "mae": -1,
}
