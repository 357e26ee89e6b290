"""Account-value metrics as small pure functions of (actual, predicted).

Ranking metrics matter most to a key-account team (who gets attention), calibration
metrics to finance (how much value the book holds). Ties in the prediction are shared
fairly: tied accounts count with their mean actual value, so a constant prediction
has a normalized Gini of exactly 0 whatever the row order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score


def _arrays(actual: object, predicted: object) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(actual, dtype=float)
    p = np.asarray(predicted, dtype=float)
    if a.shape != p.shape or a.ndim != 1:
        raise ValueError(f"actual and predicted must be 1-d of equal length, got {a.shape} and {p.shape}")
    return a, p


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
    ranking is reversed.

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

    Deciles whose mean actual value is 0 are skipped (the ratio is undefined). Tied
    predictions are split between deciles by row order (bins must be whole accounts).
    """
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
    """ROC AUC of ``scores`` for binary ``events`` (NaN with a single class)."""
    e = np.asarray(events).astype(int)
    s = np.asarray(scores, dtype=float)
    if e.min() == e.max():
        return float("nan")
    return float(roc_auc_score(e, s))


def best_recall_at_precision(events: object, scores: object, precision: float) -> float:
    """Highest recall of "flag the top k by score" whose precision is at least ``precision``.

    The best any threshold on ``scores`` can do for a flag with a precision floor; 0
    when no threshold reaches it, NaN without events.
    """
    e = np.asarray(events).astype(bool)
    if not e.any():
        return float("nan")
    hits = e[np.argsort(-np.asarray(scores, dtype=float), kind="stable")]
    true_positives = np.cumsum(hits)
    reached = true_positives / np.arange(1, len(hits) + 1) >= precision
    return float(true_positives[reached].max() / e.sum()) if reached.any() else 0.0


def interval_coverage(actual: object, low: object, high: object) -> float:
    """Share of accounts whose actual value lies in ``[low, high]``."""
    a = np.asarray(actual, dtype=float)
    return float(((a >= np.asarray(low)) & (a <= np.asarray(high))).mean())


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
