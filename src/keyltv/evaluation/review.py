"""The figures a reviewer needs to judge a training run, built from its backtest.

Figures are plain :class:`matplotlib.figure.Figure` objects (no pyplot state), so a
headless job can log them to MLflow and a notebook can display them.
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from keyltv.evaluation.backtest import BacktestResult
from keyltv.evaluation.plots import (
    plot_calibration,
    plot_decile_chart,
    plot_feature_importance,
    plot_gains,
    plot_p_alive_matrix,
)


def _figure(width: float = 6.4, height: float = 4.4) -> tuple[Figure, object]:
    figure = Figure(figsize=(width, height), layout="constrained")
    return figure, figure.subplots()


def _bins_of(n: int, ax: Axes, n_bins: int = 10) -> str:
    """The calibration curve's bins in words: "10 bins of about 80 accounts".

    Read from the curve drawn on ``ax``: fewer accounts than bins, or scores so alike
    that quantile edges coincide, leave fewer bins, where "10 bins of about 0 accounts"
    (a degenerate holdout, audit 22) said nothing true.
    """
    drawn = len(ax.lines[0].get_xdata())
    if drawn == n_bins:
        return f"{n_bins} bins of about {n // n_bins:,} accounts"
    return (f"{n:,} account{'' if n == 1 else 's'} in {drawn} bin{'' if drawn == 1 else 's'}"
            f" of {n_bins}")


def feature_importance(model: object) -> tuple[list[str], np.ndarray] | None:
    """Gain importance of a LightGBM-based model (or blend part), or None for other models."""
    if hasattr(model, "explained_component"):  # a blend: its heaviest tree model
        model = model.explained_component()
    booster = getattr(getattr(model, "model_", None), "booster_", None)
    if booster is None:
        return None
    return list(booster.feature_name()), booster.feature_importance(importance_type="gain")


def backtest_figures(result: BacktestResult, champion: str) -> dict[str, Figure]:
    """Decile chart, gains vs peers, calibration, importance and P(alive) matrix.

    Returns
    -------
    dict
        Artifact file name -> figure; figures whose inputs are missing are left out.
    """
    p = result.predictions
    figures: dict[str, Figure] = {}
    fig, ax = _figure()
    plot_decile_chart(p["actual"], p[champion], ax=ax)
    # The window on every title: these are backtest fits judged on the holdout, whose
    # length can differ from the registered model's horizon.
    window = f"value in the {result.horizon_days} days from {result.cutoff}"
    ax.set_title(f"{champion}: mean predicted vs actual value per decile\n({window})")
    figures["decile_chart.png"] = fig
    fig, ax = _figure()
    plot_gains(p["actual"], {m: p[m] for m in result.table.index if m in p}, ax=ax)
    ax.set_title(f"Gains: share of holdout value captured by the top accounts\n({window}; "
                 f"champion: {champion})")
    figures["gains.png"] = fig
    events = result.events
    if "p_alive" in events and "actual_orders" in p:
        fig, ax = _figure()
        # Equal-count bins: P(alive) bunches near 1, and equal-width bins near 0 held a
        # handful of accounts each, a curve jumping between 0 and 1.
        plot_calibration(p["actual_orders"] > 0, events["p_alive"], ax=ax, label="P(alive)",
                         strategy="quantile")
        # An alive account need not order within a short holdout: P(alive) bounds this
        # share from above, so points under the diagonal are expected, not miscalibration.
        ax.set_title(f"P(alive) at {result.cutoff} vs share that ordered again in the next "
                     f"{result.horizon_days} days\n({_bins_of(len(p), ax)}; "
                     "P(alive) bounds the share from above)")
        figures["calibration_p_alive.png"] = fig
        current = result.data.current
        fig, ax = _figure()
        plot_p_alive_matrix(current["frequency"], current["recency"], current["T"],
                            events["p_alive"], ax=ax,
                            title=f"P(alive) by frequency and recency at {result.cutoff}\n"
                                  "(accounts of the backtest, mean per cell)")
        figures["p_alive_matrix.png"] = fig
    if "decline_risk" in events:
        had_value = p["trailing_value"] > 0
        fig, ax = _figure()
        plot_calibration(events["decline"][had_value], events["decline_risk"][had_value],
                         ax=ax, label="decline risk", strategy="quantile")
        ax.set_title(f"Decline risk vs realized decline (accounts with trailing value)\n"
                     f"({_bins_of(int(had_value.sum()), ax)})")
        figures["calibration_decline.png"] = fig
    explained = explained_model(result, champion)
    if explained is not None:
        name, importance = explained
        fig, ax = _figure(6.4, 6.0)
        plot_feature_importance(*importance, ax=ax)
        ax.set_title(f"{whose_importance(result, champion, name)}\n"
                     f"feature importance (gain), fitted before {result.cutoff}", fontsize=10)
        figures["feature_importance.png"] = fig
    return figures


def whose_importance(result: BacktestResult, champion: str, name: str) -> str:
    """Whose gain importance :func:`explained_model` gave, in words.

    A blend's is its heaviest tree part's, a probabilistic champion's the best tree
    model's: a plot titled "blend" showed one part's drivers (audit), among them inputs
    only that part has.
    """
    if name != champion:
        return f"{name}, the best tree model ({champion}, the champion, has none)"
    part = getattr(result.models.get(champion), "explained_part", lambda: None)()
    if part is None:
        return name
    return f"{part[0]}, the {champion}'s heaviest tree part (mean weight {part[1]:.2f})"


def explained_model(result: BacktestResult, champion: str
                    ) -> tuple[str, tuple[list[str], np.ndarray]] | None:
    """The champion's gain importance, else the best-ranked tree model's (by Gini).

    A probabilistic champion has no per-feature importance; the tree model that ranks
    best in the same backtest still shows a reviewer which features carry the signal.
    """
    importance = feature_importance(result.models.get(champion))
    if importance is not None:
        return champion, importance
    ranked = result.table["normalized_gini"].sort_values(ascending=False).index
    for name in ranked:
        importance = feature_importance(result.models.get(name))
        if importance is not None:
            return name, importance
    return None
