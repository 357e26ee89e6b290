"""Plots are checked by the data they draw (Agg backend), not by pixels."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from keyltv.evaluation import plots

ACTUAL = np.array([0.0, 10.0, 0.0, 30.0, 60.0])


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def bar_heights(ax, container=0):
    return [bar.get_height() for bar in ax.containers[container]]


def test_a_new_figure_is_made_only_without_axes():
    _, ax = plt.subplots()
    assert plots.plot_pareto(ACTUAL, ax=ax) is ax
    assert plots.plot_pareto(ACTUAL).figure is not ax.figure


def test_decile_chart_bars_are_the_bin_means():
    predicted = np.arange(20, dtype=float)
    actual = predicted * 2
    ax = plots.plot_decile_chart(actual, predicted, n_bins=4)
    assert bar_heights(ax, 0) == pytest.approx([2.0, 7.0, 12.0, 17.0])
    assert bar_heights(ax, 1) == pytest.approx([4.0, 14.0, 24.0, 34.0])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["mean predicted", "mean actual"]


def test_decile_chart_pairs_two_series_by_account():
    actual = pd.Series([100.0, 10.0, 0.0], index=["x", "y", "z"])
    predicted = pd.Series([1.0, 2.0, 3.0], index=["z", "y", "x"])
    ax = plots.plot_decile_chart(actual, predicted, n_bins=3)
    # z is predicted lowest and bought nothing; x highest and bought 100.
    assert bar_heights(ax, 1) == pytest.approx([0.0, 10.0, 100.0])
    x, y = plots.gain_curve(actual, predicted)
    assert y == pytest.approx([0.0, 100 / 110, 1.0, 1.0])
    with pytest.raises(ValueError, match="different index labels"):
        plots.decile_means(actual, predicted.set_axis(["z", "y", "w"]))
    with pytest.raises(ValueError, match="equal length"):
        plots.decile_means(actual, predicted.iloc[:2])


def test_gains_have_one_line_per_model_plus_perfect_and_random():
    ax = plots.plot_gains(ACTUAL, {"champion": ACTUAL, "trailing": -ACTUAL})
    assert [line.get_label() for line in ax.lines] == ["champion", "trailing", "perfect", "random"]
    champion, reversed_, perfect, random = ax.lines
    assert perfect.get_ydata() == pytest.approx([0, 0.6, 0.9, 1.0, 1.0, 1.0])
    assert champion.get_ydata() == pytest.approx(perfect.get_ydata())
    assert reversed_.get_ydata()[2] == pytest.approx(0.0)
    assert random.get_ydata() == pytest.approx([0, 1])


def test_gain_curve_shares_ties_so_a_constant_prediction_is_the_diagonal():
    x, y = plots.gain_curve(ACTUAL, np.ones_like(ACTUAL))
    assert y == pytest.approx(x)


def test_calibration_curve_is_rate_per_bin():
    scores = np.array([0.1, 0.1, 0.1, 0.1, 0.9, 0.9, 0.9, 0.9])
    events = np.array([0, 0, 0, 1, 1, 1, 1, 0], dtype=bool)
    ax = plots.plot_calibration(events, scores, n_bins=2, label="P(alive)")
    curve, diagonal = ax.lines
    assert curve.get_xdata() == pytest.approx([0.1, 0.9])
    assert curve.get_ydata() == pytest.approx([0.25, 0.75])
    assert curve.get_label() == "P(alive)"
    assert diagonal.get_ydata() == pytest.approx([0, 1])


def test_calibration_without_accounts_says_so_instead_of_crashing():
    # sklearn's calibration_curve raised "operands could not be broadcast together with
    # shapes (0,) (2,)" on no account (a backtest holdout with no trailing value, audit 22).
    ax = plots.plot_calibration(np.array([], dtype=bool), np.array([]), label="decline risk")
    curve, diagonal = ax.lines
    assert len(curve.get_xdata()) == 0 and curve.get_label() == "decline risk"
    assert [t.get_text() for t in ax.texts] == ["no accounts to draw"]
    ax.figure.canvas.draw()


@pytest.mark.parametrize(("events", "note"), [
    ([False, False, False], "no account had the event (3 accounts)"),
    ([True], "every account had the event (1 account)"),
    ([False, False, True], None),
], ids=["no-buyer", "one-account", "one-buyer"])
def test_calibration_of_a_degenerate_holdout_is_drawn_with_a_note(events, note):
    scores = np.array([0.2, 0.9, 0.4])[: len(events)]
    ax = plots.plot_calibration(np.array(events), scores, strategy="quantile")
    curve, _ = ax.lines
    # Quantile bins of fewer accounts than bins: one point per account.
    assert curve.get_xdata() == pytest.approx(np.sort(scores))
    assert [t.get_text() for t in ax.texts] == ([note] if note else [])


@pytest.mark.parametrize("actual", [[], [0.0, 0.0, 0.0], [0.0, 0.0, 7.0]],
                         ids=["empty", "no-buyer", "one-buyer"])
def test_every_holdout_plot_draws_a_degenerate_holdout(actual):
    a = np.array(actual)
    s = np.array([0.2, 0.9, 0.4])[: len(a)]
    axes = [plots.plot_decile_chart(a, s), plots.plot_gains(a, {"m": s}),
            plots.plot_calibration(a > 0, s, strategy="quantile"),
            plots.plot_p_alive_matrix(a, np.zeros_like(a), np.full_like(a, 3.0), s),
            plots.plot_feature_importance([f"f{i}" for i in range(len(s))], s)]
    for ax in axes:
        ax.figure.canvas.draw()  # a crash in drawing counts too


def test_feature_importance_keeps_the_top_largest_first():
    ax = plots.plot_feature_importance(["a", "b", "c", "d"], [1.0, 5.0, 3.0, 0.5], top=3)
    widths = [bar.get_width() for bar in ax.containers[0]]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    # barh draws bottom-up: the largest is last, at the top.
    assert widths == [1.0, 3.0, 5.0]
    assert labels == ["a", "c", "b"]


def test_feature_importance_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="equal length"):
        plots.plot_feature_importance(["a"], [1.0, 2.0])


def test_p_alive_matrix_averages_accounts_per_cell():
    frequency = np.array([0.0, 0.0, 9.0, 9.0])
    recency = np.array([0.0, 0.0, 90.0, 90.0])
    T = np.array([100.0, 100.0, 100.0, 100.0])
    p_alive = np.array([0.2, 0.4, 0.9, 1.0])
    ax = plots.plot_p_alive_matrix(frequency, recency, T, p_alive, n_bins=2)
    image = ax.images[0].get_array()
    assert image.shape == (2, 2)
    assert image[0, 0] == pytest.approx(0.3)
    assert image[1, 1] == pytest.approx(0.95)
    assert image.mask[0, 1] and image.mask[1, 0]


def test_p_alive_matrix_rejects_recency_beyond_T():
    with pytest.raises(ValueError, match="recency must not exceed T"):
        plots.p_alive_matrix([1.0], [10.0], [5.0], [0.5])


def test_pareto_curve_and_guides():
    ax = plots.plot_pareto([60.0, 30.0, -5.0, 10.0, 0.0])
    curve, vertical, horizontal = ax.lines
    assert curve.get_xdata() == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert curve.get_ydata() == pytest.approx([0, 0.6, 0.9, 1.0, 1.0, 1.0])
    assert vertical.get_xdata() == pytest.approx([0.2, 0.2])
    assert horizontal.get_ydata() == pytest.approx([0.8, 0.8])
    assert curve.get_label() == "top 20% of accounts hold 60% of value"


def test_pareto_of_an_empty_or_zero_book_is_flat():
    assert plots.pareto_curve([])[1] == pytest.approx([0.0])
    assert plots.pareto_curve([0.0, -1.0])[1] == pytest.approx([0, 0, 0])


def test_tier_counts_keep_empty_tiers_in_order():
    ax = plots.plot_tier_counts(["B", "A", "B", "D"])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["A", "B", "C", "D"]
    assert bar_heights(ax) == [1, 2, 0, 1]


def test_segment_counts_follow_rule_order_then_unknown():
    ax = plots.plot_segment_counts(["ordinary", "key", "key", "zzz"])
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["at_risk", "sleeping", "key", "growing", "cultivate", "ordinary", "zzz"]
    assert bar_heights(ax) == [0, 0, 2, 0, 0, 1, 1]


def test_p_alive_matrix_bins_order_counts_in_whole_numbers():
    # Counts 0..15: 16 whole numbers in at most 20 bins, one per count, none empty by
    # construction (bins of 0.75 once left 2.25-3 without any possible account).
    frequency = np.repeat(np.arange(16.0), 10)  # 99th percentile: 15
    n = len(frequency)
    means, f_edges, _ = plots.p_alive_matrix(frequency, np.zeros(n), np.ones(n),
                                             np.full(n, 0.5))
    assert f_edges.tolist() == [k - 0.5 for k in range(17)]
    assert not np.isnan(means[0]).any()
    _, wide, _ = plots.p_alive_matrix(np.arange(50.0), np.zeros(50), np.ones(50),
                                      np.full(50, 0.5), n_bins=20)
    assert np.diff(wide).tolist() == [3.0] * (len(wide) - 1) and len(wide) - 1 <= 20
