"""Plots of model quality and of the scored book, each a pure function of its data.

Every ``plot_*`` draws on the axes it is given (or on a new figure when ``ax`` is None)
and returns the axes, so callers compose them into grids, save them as PNG for a report
or log them to MLflow. Nothing here picks a backend, sets ``rcParams`` or calls
``plt.show``: that is the caller's business (a notebook, a report, a headless job).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from sklearn.calibration import calibration_curve

from keyltv.evaluation._aligned import aligned
from keyltv.scoring.rules import SEGMENTS, TIER_ORDER


def _axes(ax: Axes | None) -> Axes:
    """Return ``ax``, or the axes of a new figure when it is None."""
    if ax is not None:
        return ax
    return plt.subplots(figsize=(6.4, 4.4))[1]


def _vector(name: str, values: object) -> np.ndarray:
    """Return ``values`` as a 1-d float array; raise a ValueError naming ``name``."""
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-d, got shape {array.shape}")
    return array


def _vectors(**values: object) -> list[np.ndarray]:
    """Per-account inputs as 1-d float arrays of equal length, two Series paired by label.

    Positions pair arrays; two pandas Series are paired by index label, as the metrics
    pair them (see :func:`~keyltv.evaluation._aligned.aligned`).
    """
    arrays = [_vector(name, v) for name, v in zip(values, aligned(**values), strict=True)]
    _same_length(**dict(zip(values, arrays, strict=True)))
    return arrays


def _same_length(**arrays: np.ndarray) -> None:
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"arrays must have equal length, got {lengths}")


def decile_means(actual: object, predicted: object, n_bins: int = 10) -> pd.DataFrame:
    """Mean predicted and mean actual value per bin of predicted rank.

    Bins are equal-count groups of the prediction's rank (ties split by position), the
    same cut as :func:`keyltv.evaluation.metrics.decile_mape`.

    Returns
    -------
    pandas.DataFrame
        Index ``1..n_bins`` (1 = lowest predictions), columns ``predicted`` and ``actual``.
    """
    a, p = _vectors(actual=actual, predicted=predicted)
    if len(p) == 0:
        return pd.DataFrame({"predicted": [], "actual": []})
    bins = pd.qcut(pd.Series(p).rank(method="first"), q=min(n_bins, len(p)), labels=False)
    frame = pd.DataFrame({"predicted": p, "actual": a, "bin": bins + 1})
    return frame.groupby("bin")[["predicted", "actual"]].mean()


def plot_decile_chart(actual: object, predicted: object, ax: Axes | None = None,
                      n_bins: int = 10) -> Axes:
    """Bars of mean predicted vs mean actual value per predicted decile.

    A calibrated model has pairs of equal bars; a good ranking has bars rising from
    left to right.

    Parameters
    ----------
    actual, predicted : array-like
        Realized and predicted value per account.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure when omitted.
    n_bins : int, default 10
        Number of equal-count bins of the predicted rank.

    Returns
    -------
    matplotlib.axes.Axes
        With two bar containers, ``predicted`` then ``actual``.
    """
    ax = _axes(ax)
    means = decile_means(actual, predicted, n_bins)
    x = np.arange(len(means))
    width = 0.4
    ax.bar(x - width / 2, means["predicted"], width, label="mean predicted")
    ax.bar(x + width / 2, means["actual"], width, label="mean actual")
    ax.set_xticks(x, [str(i) for i in means.index])
    ax.set_xlabel("decile of predicted value (1 = lowest)")
    ax.set_ylabel("value per account")
    ax.set_title("Predicted vs actual value by decile")
    ax.legend()
    return ax


def gain_curve(actual: object, predicted: object) -> tuple[np.ndarray, np.ndarray]:
    """Share of accounts vs cumulative share of actual value, ranked by ``predicted``.

    Tied predictions share their actual value evenly, so a constant prediction draws
    the diagonal whatever the row order (as in :func:`~keyltv.evaluation.metrics.normalized_gini`).
    Negative values are counted as 0: a share of the book cannot be negative.

    Returns
    -------
    share_of_accounts, share_of_value : numpy.ndarray
        ``n + 1`` points each, starting at (0, 0).
    """
    a, p = _vectors(actual=actual, predicted=predicted)
    a = np.clip(a, 0.0, None)
    x = np.linspace(0.0, 1.0, len(a) + 1)
    if a.sum() <= 0:
        return x, np.zeros_like(x)
    order = np.argsort(-p, kind="stable")
    _, starts, counts = np.unique(-p[order], return_index=True, return_counts=True)
    fair = np.repeat(np.add.reduceat(a[order], starts) / counts, counts)
    return x, np.concatenate([[0.0], np.cumsum(fair) / a.sum()])


def plot_gains(actual: object, predictions: Mapping[str, object],
               ax: Axes | None = None) -> Axes:
    """Cumulative gains: share of actual value captured by the top share of accounts.

    Parameters
    ----------
    actual : array-like
        Realized value per account.
    predictions : mapping of str to array-like
        One prediction per model (champion and peers), same order as ``actual`` (or
        Series indexed by the same accounts as an ``actual`` Series).
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure when omitted.

    Returns
    -------
    matplotlib.axes.Axes
        One line per model in ``predictions`` order, then ``perfect`` and ``random``.
    """
    ax = _axes(ax)
    for name, predicted in predictions.items():
        ax.plot(*gain_curve(actual, predicted), label=str(name))
    ax.plot(*gain_curve(actual, actual), color="black", linestyle="--", label="perfect")
    ax.plot([0.0, 1.0], [0.0, 1.0], color="grey", linestyle=":", label="random")
    ax.set_xlabel("share of accounts (ranked by prediction)")
    ax.set_ylabel("share of actual value")
    ax.set_title("Cumulative gains")
    ax.legend(loc="lower right")
    return ax


def plot_calibration(events: object, scores: object, ax: Axes | None = None,
                     n_bins: int = 10, label: str = "model",
                     strategy: str = "uniform") -> Axes:
    """Reliability curve: observed event rate vs mean score per score bin.

    Used for P(alive) (event: any order in the horizon) and decline risk (event: the
    decline event). Empty bins are left out. A degenerate holdout still gets a figure:
    with no account the axes say so instead of a curve, and with one class only (no
    account, or every account, had the event) a note says so beside the curve.

    Parameters
    ----------
    events : array-like of bool
        Realized events.
    scores : array-like of float in [0, 1]
        Predicted probabilities.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure when omitted.
    n_bins : int, default 10
        Number of bins.
    label : str, default "model"
        Legend label of the curve.
    strategy : {"uniform", "quantile"}, default "uniform"
        Equal-width bins, or equal-count bins for scores bunched near 0 or 1.

    Returns
    -------
    matplotlib.axes.Axes
        First line: the curve (x = mean score, y = observed rate; empty without
        accounts); second: the diagonal. ``ax.texts`` holds the note, if any.
    """
    ax = _axes(ax)
    events, scores = aligned(events=events, scores=scores)
    e = np.asarray(events, dtype=bool)
    s = _vector("scores", scores)
    _same_length(events=e, scores=s)
    observed, mean_score = _calibration_points(e, s, n_bins, strategy)
    ax.plot(mean_score, observed, marker="o", label=label)
    note = _one_class_note(e)
    if note:
        ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center",
                color="dimgrey")
    ax.plot([0.0, 1.0], [0.0, 1.0], color="grey", linestyle=":", label="perfectly calibrated")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed rate")
    ax.set_title(f"Calibration: {label}")
    ax.legend(loc="upper left")
    return ax


def _calibration_points(events: np.ndarray, scores: np.ndarray, n_bins: int,
                        strategy: str) -> tuple[np.ndarray, np.ndarray]:
    """Observed rate and mean score per non-empty bin; two empty arrays without accounts.

    sklearn's ``calibration_curve`` cannot take zero accounts: it infers the positive
    class from ``np.unique(events)``, and comparing that empty array with ``[0, 1]``
    raises "operands could not be broadcast together with shapes (0,) (2,)" (a backtest
    holdout with no account with trailing value reached it, audit 22). ``pos_label``
    is given because the events are booleans, so one class alone is never refused.
    """
    if len(events) == 0:
        return np.array([]), np.array([])
    return calibration_curve(events, scores, n_bins=n_bins, strategy=strategy,
                             pos_label=True)


def _one_class_note(events: np.ndarray) -> str:
    """What the axes should say when the events cannot judge calibration, else ''."""
    n = len(events)
    if n == 0:
        return "no accounts to draw"
    if events.all() or not events.any():
        # One class: every bin's observed rate is 0 (or 1) whatever the scores were.
        who = "every account" if events.all() else "no account"
        return f"{who} had the event ({n:,} account{'s' if n > 1 else ''})"
    return ""


def plot_feature_importance(names: Sequence[str], importances: object,
                            ax: Axes | None = None, top: int = 20) -> Axes:
    """Horizontal bars of the ``top`` most important features, largest at the top.

    Returns
    -------
    matplotlib.axes.Axes
        Bars in the order drawn: the least important of the kept features first.
    """
    values = _vector("importances", importances)
    if len(names) != len(values):
        raise ValueError(f"names and importances must have equal length, "
                         f"got {len(names)} and {len(values)}")
    ax = _axes(ax)
    ranked = pd.Series(values, index=list(map(str, names))).sort_values(
        ascending=False, kind="stable").head(top)
    ax.barh(ranked.index[::-1], ranked.to_numpy()[::-1])
    ax.set_xlabel("importance")
    ax.set_title(f"Feature importance (top {len(ranked)})")
    return ax


def p_alive_matrix(frequency: object, recency: object, T: object, p_alive: object,
                   n_bins: int = 20) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean P(alive) per (frequency, recency) cell; NaN where a cell has no account.

    Frequency bins span 0 to its 99th percentile (the heavy tail goes to the last bin,
    else one outlier would squeeze everyone into the first column), in whole numbers of
    orders when frequencies are counts (at most ``n_bins`` bins, each of the same whole
    width); recency bins span 0 to the largest ``T``, the whole range recency can take.

    Returns
    -------
    means : numpy.ndarray
        Shape ``(n_recency_bins, n_frequency_bins)``: ``n_bins`` recency bins, and
        ``n_bins`` frequency bins or fewer for counts.
    frequency_edges, recency_edges : numpy.ndarray
        Bin edges.
    """
    f, r, t, p = _vectors(frequency=frequency, recency=recency, T=T, p_alive=p_alive)
    if (r > t).any():
        raise ValueError("recency must not exceed T (both in the same time unit)")
    f_max = max(float(np.quantile(f, 0.99)) if len(f) else 1.0, 1.0)
    if len(f) and np.array_equal(f, np.round(f)):
        # Counts (repeat orders): bins of whole numbers, each centred on its counts.
        # Bins of 0.75 orders left columns that no account can fall in (2.25-3 holds no
        # whole number), drawn white as if empty of accounts.
        width = int(np.ceil((np.floor(f_max) + 1) / n_bins))
        f_edges = np.arange(-0.5, np.floor(f_max) + 0.5 + width, width, dtype=float)
        f_max = f_edges[-1]
    else:
        f_edges = np.linspace(0.0, f_max, n_bins + 1)
    r_edges = np.linspace(0.0, max(float(t.max()) if len(t) else 1.0, 1.0), n_bins + 1)
    cells = (np.clip(r, 0.0, r_edges[-1]), np.clip(f, 0.0, f_max))
    counts, _, _ = np.histogram2d(*cells, bins=(r_edges, f_edges))
    sums, _, _ = np.histogram2d(*cells, bins=(r_edges, f_edges), weights=p)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan), f_edges, r_edges


def plot_p_alive_matrix(frequency: object, recency: object, T: object, p_alive: object,
                        ax: Axes | None = None, n_bins: int = 20,
                        title: str = "P(alive) by frequency and recency") -> Axes:
    """Heat map of mean P(alive) by frequency and recency, from given arrays.

    Like lifetimes' ``plot_probability_alive_matrix``, but it averages the P(alive)
    of real accounts per cell instead of evaluating the model on a grid, so it works
    for any source of P(alive). Inputs use lifetimes' conventions (see
    :mod:`keyltv.features.definitions`).

    Returns
    -------
    matplotlib.axes.Axes
        With one image whose array is :func:`p_alive_matrix`'s ``means`` (masked where
        a cell is empty).
    """
    ax = _axes(ax)
    means, f_edges, r_edges = p_alive_matrix(frequency, recency, T, p_alive, n_bins)
    image = ax.imshow(np.ma.masked_invalid(means), origin="lower", aspect="auto",
                      cmap="viridis", vmin=0.0, vmax=1.0,
                      extent=(f_edges[0], f_edges[-1], r_edges[0], r_edges[-1]))
    ax.figure.colorbar(image, ax=ax, label="mean P(alive)")
    ax.set_xlabel("frequency (repeat orders; last column: 99th percentile and above)")
    ax.set_ylabel("recency (days from first to last order)")
    ax.set_title(title)
    return ax


def pareto_curve(values: object) -> tuple[np.ndarray, np.ndarray]:
    """Share of accounts vs cumulative share of value, accounts sorted by value desc.

    Negative values count as 0 (an account with net returns holds no share of the book).

    Returns
    -------
    share_of_accounts, share_of_value : numpy.ndarray
        ``n + 1`` points each, starting at (0, 0).
    """
    v = np.sort(np.clip(_vector("values", values), 0.0, None))[::-1]
    x = np.linspace(0.0, 1.0, len(v) + 1)
    total = v.sum()
    y = np.cumsum(v) / total if total > 0 else np.zeros(len(v))
    return x, np.concatenate([[0.0], y])


def plot_pareto(values: object, ax: Axes | None = None, quantity: str = "value") -> Axes:
    """Pareto (Lorenz) curve of value with the 20 % / 80 % guides.

    The legend says what share of value the top 20 % of accounts actually hold.
    ``quantity`` names what ``values`` are in the labels (``"profit"`` where tiers rank
    predicted profit).

    Returns
    -------
    matplotlib.axes.Axes
        First line: the curve; then the two guides (vertical at 0.2, horizontal at 0.8).
    """
    ax = _axes(ax)
    x, y = pareto_curve(values)
    top20 = float(np.interp(0.2, x, y))
    ax.plot(x, y, label=f"top 20% of accounts hold {top20:.0%} of {quantity}")
    ax.axvline(0.2, color="grey", linestyle=":")
    ax.axhline(0.8, color="grey", linestyle=":")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel(f"share of accounts (sorted by {quantity}, largest first)")
    ax.set_ylabel(f"cumulative share of {quantity}")
    ax.set_title("Pareto curve")
    ax.legend(loc="lower right")
    return ax


def _plot_counts(values: object, order: Sequence[str], ax: Axes | None, title: str) -> Axes:
    """Bars of counts per category: known categories in ``order`` (zeros kept), then others."""
    ax = _axes(ax)
    counts = pd.Series(values, dtype=object).value_counts()
    extra = sorted(str(c) for c in counts.index if c not in order)
    counts = counts.rename(index=str).reindex([*order, *extra], fill_value=0)
    bars = ax.bar(counts.index, counts.to_numpy())
    ax.bar_label(bars)
    ax.margins(y=0.12)  # head room for the labels on the tallest bar
    ax.set_ylabel("accounts")
    ax.set_title(title)
    return ax


def plot_tier_counts(tiers: object, ax: Axes | None = None) -> Axes:
    """Bars of accounts per tier, A to D (empty tiers shown as 0)."""
    return _plot_counts(tiers, TIER_ORDER, ax, "Accounts per tier")


def plot_segment_counts(segments: object, ax: Axes | None = None) -> Axes:
    """Bars of accounts per segment, in the rule order of :mod:`keyltv.scoring.rules`."""
    ax = _plot_counts(segments, SEGMENTS, ax, "Accounts per segment")
    ax.tick_params(axis="x", labelrotation=30)
    return ax
