"""The reviewer's figures of a backtest, on hand-typed degenerate holdouts."""

import matplotlib

matplotlib.use("Agg")

from datetime import date  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import pandas as pd  # noqa: E402

from keyltv.evaluation.review import backtest_figures  # noqa: E402


def holdout(trailing: list[float], orders: list[int], p_alive: list[float]) -> SimpleNamespace:
    """A backtest result of one account per list item, one tree-less model (``trailing``)."""
    n = len(trailing)
    ids = pd.Index([f"a{k}" for k in range(n)], name="customer_id")
    predictions = pd.DataFrame({"actual": [7.0 * o for o in orders], "actual_orders": orders,
                                "trailing_value": trailing, "trailing": trailing}, index=ids)
    events = pd.DataFrame({"decline": [False] * n, "p_alive": p_alive,
                           "decline_risk": [0.3] * n}, index=ids)
    current = pd.DataFrame({"frequency": [1] * n, "recency": [10] * n, "T": [30] * n},
                           index=ids)
    return SimpleNamespace(predictions=predictions, events=events, horizon_days=91,
                           cutoff=date(2032, 10, 2), data=SimpleNamespace(current=current),
                           table=pd.DataFrame({"normalized_gini": [0.0]}, index=["trailing"]),
                           models={})


def test_a_holdout_without_trailing_value_gets_every_figure():
    # The audit's log: one typo line in 2032 put the holdout where no account had
    # trailing value (the decline plot crashed) and one account bought.
    figures = backtest_figures(holdout([0.0] * 3, [0, 0, 1], [0.2, 0.9, 0.4]), "trailing")
    assert sorted(figures) == ["calibration_decline.png", "calibration_p_alive.png",
                               "decile_chart.png", "gains.png", "p_alive_matrix.png"]
    decline = figures["calibration_decline.png"].axes[0]
    assert [t.get_text() for t in decline.texts] == ["no accounts to draw"]
    assert "(0 accounts in 0 bins of 10)" in decline.get_title()
    alive = figures["calibration_p_alive.png"].axes[0]
    assert "(3 accounts in 3 bins of 10;" in alive.get_title()
    for figure in figures.values():
        figure.canvas.draw()


def test_the_calibration_title_counts_the_bins_drawn():
    spread = holdout([1.0] * 30, [0, 1] * 15, [k / 40 for k in range(30)])
    alive = backtest_figures(spread, "trailing")["calibration_p_alive.png"].axes[0]
    assert "(10 bins of about 3 accounts;" in alive.get_title()
    # Scores all alike: the quantile edges coincide and one bin is drawn, not ten.
    alike = holdout([1.0] * 30, [0, 1] * 15, [0.01] * 30)
    alive = backtest_figures(alike, "trailing")["calibration_p_alive.png"].axes[0]
    assert "(30 accounts in 1 bin of 10;" in alive.get_title()
