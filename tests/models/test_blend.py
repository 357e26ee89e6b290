"""Blend weights, cross-fitting and the deployable blend."""

import numpy as np
import pandas as pd
import pytest

from keyltv.models.blend import (
    BlendedLTV,
    blend_columns,
    blend_weights,
    can_stratify,
    components_of,
    cross_fitted_blend,
    stratify,
)


def _holdout(n=400, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.gamma(1.0, 100.0, n)
    b = rng.gamma(1.0, 100.0, n)
    return pd.DataFrame({"a": a, "b": b})


def test_weights_recover_an_exact_mixture():
    P = _holdout()
    y = 0.3 * P["a"] + 0.7 * P["b"]
    w = blend_weights(P, y)
    assert w["a"] == pytest.approx(0.3, abs=1e-3)
    assert w["b"] == pytest.approx(0.7, abs=1e-3)


def test_weights_are_never_negative():
    P = _holdout()
    P["noise"] = P["a"].max() - P["a"]  # anti-correlated with the truth
    w = blend_weights(P, P["a"])
    assert (w >= 0).all()
    assert w["noise"] == pytest.approx(0.0, abs=1e-3)


def test_weights_sum_to_one_so_the_blend_stays_between_its_parts():
    # Free weights would rescale both parts to the holdout's level (half of "a" here),
    # and carry that window's level into the next horizon; a mixture cannot.
    P = _holdout()
    y = P["a"] / 2
    w = blend_weights(P, y)
    assert w.sum() == pytest.approx(1.0, abs=1e-12)
    blended = P.to_numpy() @ w.to_numpy()
    assert (blended >= P.min(axis=1) - 1e-9).all() and (blended <= P.max(axis=1) + 1e-9).all()
    assert w["a"] > w["b"]  # still the better-ranking part


def test_weights_do_not_depend_on_the_money_unit():
    P = _holdout()
    y = 0.3 * P["a"] + 0.7 * P["b"]
    np.testing.assert_allclose(blend_weights(P * 1e6, y * 1e6), blend_weights(P, y), atol=1e-6)


def test_negative_actuals_count_as_zero():
    P = _holdout(50)
    y = 0.5 * P["a"]
    y.iloc[0] = -1e6  # a large net return must not drag the weights below zero
    assert (blend_weights(P, y) >= 0).all()


def test_cross_fitted_predictions_do_not_see_their_own_account():
    P = _holdout(200)
    y = (0.5 * P["a"] + 0.5 * P["b"]).to_numpy()
    base = cross_fitted_blend(P, y, seed=3)
    changed = y.copy()
    changed[7] *= 100.0
    moved = cross_fitted_blend(P, changed, seed=3)
    assert moved[7] == pytest.approx(base[7])  # its own fold's weights never saw it
    assert not np.allclose(moved, base)  # other folds did


class _Const:
    def __init__(self, value):
        self.value = value

    def predict(self, X):
        return np.full(len(X), self.value)


class _Explained(_Const):
    def contributions(self, X):
        return pd.DataFrame({"f": np.full(len(X), self.value)}, index=X.index)


def test_blended_model_sums_weighted_predictions_and_explains_its_heaviest_tree():
    X = pd.DataFrame({"x": [1.0, 2.0, 3.0]}, index=["a", "b", "c"])
    blend = BlendedLTV({"p": _Const(10.0), "g": _Explained(-4.0), "h": _Explained(2.0)},
                       {"p": 0.5, "g": 0.1, "h": 0.4})
    # Negative component predictions are floored at zero before weighting.
    np.testing.assert_allclose(blend.predict(X), [5.8, 5.8, 5.8])
    assert blend.contributions(X)["f"].tolist() == [2.0, 2.0, 2.0]
    assert blend.tracking_params() == {"weight_p": 0.5, "weight_g": 0.1, "weight_h": 0.4}
    assert blend.explained_part() == ("h", 0.4)  # whose drivers a plot of the blend shows


def test_blended_model_needs_every_weighted_component():
    with pytest.raises(ValueError, match="no fitted model"):
        BlendedLTV({"p": _Const(1.0)}, {"p": 0.5, "lightgbm": 0.5})


def test_stratified_weights_apply_to_their_own_accounts_only():
    X = pd.DataFrame({"trailing_value": [0.0, 5.0, 0.0]}, index=["a", "b", "c"])
    blend = BlendedLTV({"p": _Const(10.0), "g": _Explained(4.0)},
                       {"p.active": 1.0, "g.idle": 0.8, "p.idle": 0.2})
    # b is active (1 x 10); a and c are idle (0.8 x 4 + 0.2 x 10).
    np.testing.assert_allclose(blend.predict(X), [5.2, 10.0, 5.2])
    # With idle_days the stratum comes from the last order: a ordered 30 days ago.
    X = X.assign(orders_total=[2, 1, 0], days_since_last_order=[30, 400, 30])
    days = BlendedLTV(blend.components, blend.weights, idle_days=90)
    np.testing.assert_allclose(days.predict(X), [10.0, 5.2, 5.2])
    assert days.tracking_params()["idle_days"] == 90
    assert components_of(blend.weights) == ["p", "g"]
    assert blend.contributions(X)["f"].tolist() == [4.0, 4.0, 4.0]  # g: 0.8 over strata
    assert blend.explained_part() == ("g", pytest.approx(0.4))  # 0.8 in one of two strata


def test_blend_columns_mask_each_stratum_and_weights_recover_a_stratified_truth():
    rng = np.random.default_rng(0)
    n = 4000
    P = pd.DataFrame({"a": rng.gamma(2.0, 50.0, n), "b": rng.gamma(2.0, 50.0, n)})
    active = rng.random(n) >= 0.5
    strata = np.where(active, "active", "idle")
    y = np.where(active, 0.8 * P["a"] + 0.2 * P["b"], 0.3 * P["a"] + 0.7 * P["b"])
    frame = blend_columns(P, ["a", "b"], strata)
    assert (frame.loc[~active, "a.active"] == 0).all() and (frame.loc[active, "b.idle"] == 0).all()
    w = blend_weights(frame, y)
    np.testing.assert_allclose(w[["a.active", "b.active", "a.idle", "b.idle"]],
                               [0.8, 0.2, 0.3, 0.7], atol=1e-3)
    assert can_stratify(strata, y)
    # Too few idle accounts, or none of them buying: one set of weights.
    assert not can_stratify(np.r_[["idle"] * 10, ["active"] * n], np.ones(n + 10))
    assert not can_stratify(strata, np.where(active, 1.0, 0.0))
    assert blend_columns(P, ["a", "b"]).columns.tolist() == ["a", "b"]


def test_an_account_is_idle_after_idle_days_without_an_order_whatever_the_trailing_window():
    # The selection backtest's features have a trailing window of half the deployed
    # horizon: an order 200 days ago leaves no trailing value there, but the account
    # is active for a 365-day horizon, as it will be when the blend is deployed.
    X = pd.DataFrame({"orders_total": [3, 3, 3, 0], "days_since_last_order": [10, 200, 400, 5],
                      "trailing_value": [50.0, 0.0, 0.0, -20.0]}, index=list("abcd"))
    assert stratify(X, 365).tolist() == ["active", "active", "idle", "idle"]  # d: no order
    assert stratify(X, 182).tolist() == ["active", "idle", "idle", "idle"]
    # A blend stored without idle_days keeps the trailing-value rule.
    assert stratify(X, None).tolist() == ["active", "idle", "idle", "idle"]


@pytest.mark.parametrize(("weights", "message"), [
    ({"p": 1.5, "g": -0.5}, "blend weight g = -0.5: weights must be finite and >= 0"),
    ({"p": np.nan, "g": 1.0}, "blend weight p = nan"),
    ({"p": 0.6, "g": 0.6}, "blend weights sum to 1.2, not 1"),
    ({"p": 0.0, "g": 0.0}, "blend weights sum to 0, not 1"),
    ({"p.active": 1.0, "g.idle": 0.5}, "blend weights of the idle accounts sum to 0.5, not 1"),
    ({"p.active": 1.0, "p.idle": 0.5, "g": 0.5}, r"key 'g': expected <model>.active or <model>.idle"),
    ({"p.active": 1.0, "p.idle": 1.0, "p.other": 0.0}, r"key 'p.other'"),
], ids=["negative", "nan", "sum", "zero", "stratum-sum", "mixed-keys", "unknown-stratum"])
def test_blend_weights_must_be_a_mixture(weights, message):
    # {"lightgbm": 1.5, "trailing": -0.5} was accepted and predicted 1.5 x LightGBM.
    with pytest.raises(ValueError, match=message):
        BlendedLTV({"p": _Const(1.0), "g": _Const(2.0)}, weights)


def test_negligible_weights_count_as_zero_and_their_models_are_not_kept():
    # The solver leaves ~1e-17 on excluded models (CDNOW's selection blend had four).
    blend = BlendedLTV({"p": _Const(10.0), "g": _Const(4.0), "h": _Const(1.0)},
                       {"p": 0.25, "g": 0.75 - 3e-17, "h": 3e-17, "x": 1e-17})
    assert blend.weights == {"p": 0.25, "g": 0.75 - 3e-17}
    assert list(blend.components) == ["p", "g"]  # "x" needs no model, "h" is dropped
    np.testing.assert_allclose(blend.predict(pd.DataFrame({"x": [0.0]})), [5.5])
    assert repr(blend) == "BlendedLTV(p=0.25, g=0.75)"


def test_fitted_weights_are_exactly_zero_below_the_floor_and_pass_the_check():
    P = _holdout()
    P["noise"] = P["a"].max() - P["a"]
    w = blend_weights(P, 0.3 * P["a"] + 0.7 * P["b"])
    assert w["noise"] == 0.0  # a residue of 1e-21 before the floor
    BlendedLTV({m: _Const(1.0) for m in P.columns}, w.to_dict())
