"""BG/NBD and Gamma-Gamma reproduce the published CDNOW numbers through our wrapper."""

from importlib import resources

import numpy as np
import pandas as pd
import pytest

from keyltv.models import ProbabilisticLTV


@pytest.fixture(scope="module")
def cdnow_summary() -> pd.DataFrame:
    """The 2,357-customer CDNOW sample of Fader, Hardie and Lee, in our feature terms (days)."""
    path = resources.files("lifetimes") / "datasets" / "cdnow_customers_summary_with_transactions.csv"
    raw = pd.read_csv(path)
    return pd.DataFrame(
        {
            "frequency": raw["x"].astype(float),
            "recency": raw["t_x"] * 7.0,
            "T": raw["T"] * 7.0,
            "repeat_order_value": raw["zbar"].astype(float),
        }
    )


@pytest.fixture(scope="module")
def fitted(cdnow_summary) -> ProbabilisticLTV:
    return ProbabilisticLTV(kind="bgnbd", horizon_days=273).fit(cdnow_summary)


def test_bgnbd_reproduces_fader_hardie_lee(fitted):
    # Fader, Hardie, Lee (2005), table 1: r, alpha, a, b.
    got = [fitted.params_[k] for k in ("r", "alpha", "a", "b")]
    np.testing.assert_allclose(got, [0.243, 4.414, 0.793, 2.426], atol=2e-3)
    assert fitted.penalizer_ == 0.0


def test_gamma_gamma_reproduces_fader_hardie_lee(fitted):
    # Fader, Hardie, Lee (2005b), "RFM and CLV": p, q, gamma on the 946 repeat buyers.
    got = [fitted.spend_params_[k] for k in ("p", "q", "v")]
    np.testing.assert_allclose(got, [6.25, 3.74, 15.44], atol=0.01)


def test_weights_give_the_same_fit_as_repeated_rows(cdnow_summary, fitted):
    # Doubling every account must not move the maximum-likelihood estimate.
    doubled = pd.concat([cdnow_summary, cdnow_summary], ignore_index=True)
    refit = ProbabilisticLTV(kind="bgnbd", horizon_days=273).fit(doubled)
    np.testing.assert_allclose(list(refit.params_.values()), list(fitted.params_.values()), rtol=1e-3)


def test_outputs_are_consistent(cdnow_summary, fitted):
    alive = fitted.predict_p_alive(cdnow_summary)
    orders = fitted.predict_orders(cdnow_summary)
    assert ((alive >= 0) & (alive <= 1)).all()
    # BG/NBD: a one-time buyer is alive with probability 1 (a known property of the model).
    assert np.allclose(alive[cdnow_summary["frequency"].to_numpy() == 0], 1.0)
    np.testing.assert_allclose(fitted.predict(cdnow_summary),
                               orders * fitted.predict_spend(cdnow_summary))
    # The 39-week holdout of the sample had 1,788 repeat purchases; BG/NBD predicts ~1,700.
    assert 1500 < orders.sum() < 1900


def test_more_orders_never_lower_expected_orders(cdnow_summary, fitted):
    busier = cdnow_summary.assign(frequency=cdnow_summary["frequency"] + 1,
                                  recency=cdnow_summary["T"])
    assert (fitted.predict_orders(busier) >= fitted.predict_orders(cdnow_summary) - 1e-9).all()


def test_pareto_nbd_fits(cdnow_summary):
    model = ProbabilisticLTV(kind="pareto", horizon_days=273).fit(cdnow_summary)
    np.testing.assert_allclose([model.params_[k] for k in ("r", "alpha", "s", "beta")],
                               [0.553, 10.578, 0.606, 11.669], rtol=0.02)


def test_pareto_nbd_fit_does_not_depend_on_numpy_global_random_state(cdnow_summary):
    # lifetimes draws Pareto/NBD's start point from the unseeded global generator.
    fits = []
    for seed in (1, 2):
        np.random.seed(seed)  # noqa: NPY002 -- the legacy global state is what lifetimes reads
        fits.append(ProbabilisticLTV(kind="pareto").fit(cdnow_summary).params_)
    assert fits[0] == fits[1]


def test_no_repeat_buyer_is_a_clear_error(cdnow_summary):
    one_timers = cdnow_summary.assign(frequency=0.0, recency=0.0)
    with pytest.raises(ValueError, match="no account has a repeat order"):
        ProbabilisticLTV().fit(one_timers)
    with pytest.raises(ValueError, match="kind='nbd' is not one of"):
        ProbabilisticLTV(kind="nbd").fit(cdnow_summary)


def test_missing_or_infinite_inputs_are_refused_not_dropped(cdnow_summary, fitted):
    gaps = cdnow_summary.copy()
    gaps.loc[:299, "frequency"] = np.nan  # grouping identical histories dropped these rows
    with pytest.raises(ValueError, match="column 'frequency' has 300 missing or infinite"):
        ProbabilisticLTV(kind="bgnbd", horizon_days=273).fit(gaps)
    # At predict time a NaN row came out as 0 and an infinite T as NaN.
    rows = cdnow_summary.head(3).copy()
    rows.loc[0, "recency"] = np.nan
    rows.loc[1, "T"] = np.inf
    for predict in (fitted.predict, fitted.predict_orders, fitted.predict_p_alive):
        with pytest.raises(ValueError, match="column 'recency' has 1 missing or infinite"):
            predict(rows)
    with pytest.raises(ValueError, match="column 'repeat_order_value' has 1 missing"):
        fitted.predict_spend(cdnow_summary.head(2).assign(repeat_order_value=[1.0, np.nan]))
    assert fitted.predict(cdnow_summary.head(0)).shape == (0,)


# Four accounts in our terms (days): a one-time buyer, a steady repeat buyer, one gone
# quiet and a heavy buyer; trailing values around their spend.
FOUR = pd.DataFrame({"frequency": [0.0, 6.0, 6.0, 20.0], "recency": [0.0, 250.0, 60.0, 260.0],
                     "T": [200.0, 260.0, 260.0, 270.0],
                     "repeat_order_value": [0.0, 40.0, 40.0, 25.0]})
TRAILING = np.array([0.0, 120.0, 80.0, 200.0])


def simulated_events(model, X, trailing, draws=200_000, seed=1):
    """The same events by simulating the model's story, account by account."""
    rng = np.random.default_rng(seed)
    r, alpha, a, b = (model.params_[k] for k in ("r", "alpha", "a", "b"))
    p, q, v = (model.spend_params_[k] for k in ("p", "q", "v"))
    alive = model.predict_p_alive(X)
    t = model.horizon_days / 7.0
    out = []
    for i, row in enumerate(X.itertuples()):
        x, big_t = row.frequency, row.T / 7.0
        rate = rng.gamma(r + x, 1.0 / (alpha + big_t), draws)
        drop = rng.beta(a, b + x + (model.kind == "mbgnbd"), draws)
        n = np.minimum(rng.poisson(rate * t), rng.geometric(np.maximum(drop, 1e-300)))
        n = np.where(rng.random(draws) < alive[i], n, 0)
        xs, mean = (x, row.repeat_order_value) if row.repeat_order_value > 0 else (0.0, 0.0)
        nu = rng.gamma(p * xs + q, 1.0 / (v + xs * mean), draws)
        value = np.where(n > 0, rng.gamma(np.maximum(n * p, 1e-12), 1.0 / nu), 0.0)
        out.append(((value < 0.5 * trailing[i]).mean() if trailing[i] > 0 else 0.0,
                    (value > 1.5 * trailing[i]).mean()))
    return np.array(out)


@pytest.mark.parametrize("kind", ["bgnbd", "mbgnbd"])
def test_event_chances_are_those_of_the_models_story(cdnow_summary, kind):
    model = ProbabilisticLTV(kind=kind, horizon_days=273).fit(cdnow_summary)
    chances = model.event_probabilities(FOUR, TRAILING, decline_ratio=0.5, growth_ratio=1.5)
    decline, growth = chances["decline"], chances["growth"]
    expected = simulated_events(model, FOUR, TRAILING)
    # 200,000 draws: a standard error of at most 0.0011.
    np.testing.assert_allclose(decline, expected[:, 0], atol=0.005)
    np.testing.assert_allclose(growth, expected[:, 1], atol=0.005)
    assert decline[0] == 0.0  # nothing to lose without trailing value
    assert decline[2] > decline[1]  # quiet for 200 days: likelier gone


def test_event_chances_add_up_to_the_expected_orders(fitted):
    # With a fixed order value of 1, P(value > k) = P(more than k orders), whose sum
    # over k is the expected number of orders: lifetimes' own formula.
    fixed = ProbabilisticLTV(kind="bgnbd", horizon_days=273)
    fixed.params_, fixed.spend_params_, fixed.fallback_spend_ = fitted.params_, {}, 1.0
    k = np.arange(0, 400)
    rows = FOUR.loc[FOUR.index.repeat(len(k))]
    above = fixed.event_probabilities(rows, np.tile(k / 1.5, len(FOUR)), growth_ratio=1.5)
    assert set(above) == {"growth"}  # only what was asked for
    above = above["growth"]
    np.testing.assert_allclose(above.reshape(len(FOUR), -1).sum(axis=1),
                               fitted.predict_orders(FOUR), rtol=1e-6)


def test_event_chances_need_a_purchase_count_model(cdnow_summary):
    pareto = ProbabilisticLTV(kind="pareto", horizon_days=273).fit(cdnow_summary)
    with pytest.raises(ValueError, match="BG/NBD or MBG/NBD"):
        pareto.event_probabilities(FOUR, TRAILING, decline_ratio=0.5)


def test_event_chances_of_a_heavy_buyer_do_not_underflow(fitted):
    # 1,000 order days in 1,000 days, a 2,000-day horizon: P(no order | alive) is
    # stay ** (r + x), about 1e-470, below the smallest double.
    heavy = pd.DataFrame({"frequency": [1000.0], "recency": [999.0], "T": [1000.0],
                          "repeat_order_value": [30.0]})
    model = ProbabilisticLTV(kind="bgnbd", horizon_days=2000)
    model.params_, model.spend_params_ = fitted.params_, fitted.spend_params_
    chances = model.event_probabilities(heavy, [1.0], decline_ratio=0.5, growth_ratio=1.5)
    alive = model.predict_p_alive(heavy)[0]
    assert chances["growth"][0] == pytest.approx(alive, rel=1e-6)  # it surely buys again
    assert chances["decline"][0] == pytest.approx(1.0 - alive, abs=1e-6)


def test_a_fixed_order_value_declines_only_strictly_below_the_line(fitted):
    # No spend model: every order is worth 1. Trailing 4 at ratio 0.5 draws the line at
    # 2 orders, which is not a decline; fewer is.
    fixed = ProbabilisticLTV(kind="bgnbd", horizon_days=273)
    fixed.params_, fixed.spend_params_, fixed.fallback_spend_ = fitted.params_, {}, 1.0
    one = FOUR.iloc[[1]]
    def below(trailing):
        return fixed.event_probabilities(one, [trailing], decline_ratio=0.5)["decline"][0]

    # Lines at 2, 2.5 and 3 orders: fewer than 2, at most 2, at most 2.
    assert below(4.0) < below(5.0) == pytest.approx(below(6.0))


@pytest.fixture(scope="module")
def with_first_orders(cdnow_summary) -> pd.DataFrame:
    """The CDNOW sample with every order counted, first ones at seeded lognormal values."""
    rng = np.random.default_rng(0)
    first = rng.lognormal(np.log(30.0), 0.6, len(cdnow_summary))
    x = cdnow_summary["frequency"]
    return cdnow_summary.assign(
        orders_total=x + 1,
        avg_order_value=(x * cdnow_summary["repeat_order_value"] + first) / (x + 1))


def test_spend_on_all_orders_is_lifetimes_gamma_gamma_on_them(with_first_orders):
    from lifetimes import GammaGammaFitter

    model = ProbabilisticLTV(kind="bgnbd", horizon_days=273, spend="all").fit(with_first_orders)
    direct = GammaGammaFitter().fit(with_first_orders["orders_total"],
                                    with_first_orders["avg_order_value"])
    np.testing.assert_allclose(list(model.spend_params_.values()),
                               [direct.params_[k] for k in ("p", "q", "v")], rtol=1e-6)
    np.testing.assert_allclose(
        model.predict_spend(with_first_orders),
        direct.conditional_expected_average_profit(with_first_orders["orders_total"],
                                                   with_first_orders["avg_order_value"]),
        rtol=1e-9)


def test_a_one_order_account_is_valued_by_its_order_only_with_all_orders(with_first_orders):
    one_order = with_first_orders[with_first_orders["frequency"] == 0].iloc[:2].copy()
    one_order["avg_order_value"] = [10.0, 200.0]
    repeat = ProbabilisticLTV(kind="bgnbd", horizon_days=273).fit(with_first_orders)
    every = ProbabilisticLTV(kind="bgnbd", horizon_days=273, spend="all").fit(with_first_orders)
    assert repeat.predict_spend(one_order)[0] == repeat.predict_spend(one_order)[1]
    low, high = every.predict_spend(one_order)
    assert 10.0 < low < high < 200.0  # shrunk towards the population, order kept


def test_spend_setting_and_its_inputs_are_checked(cdnow_summary, with_first_orders):
    with pytest.raises(ValueError, match="spend='first'"):
        ProbabilisticLTV(spend="first").fit(with_first_orders)
    with pytest.raises(ValueError, match="avg_order_value"):
        ProbabilisticLTV(spend="all").fit(cdnow_summary.assign(orders_total=1.0))


def test_a_model_pickled_before_the_spend_setting_scores_as_trained(cdnow_summary, fitted):
    import pickle

    old = pickle.loads(pickle.dumps(fitted))
    del old.__dict__["spend"]  # as a model pickled before the setting existed
    np.testing.assert_array_equal(old.predict(cdnow_summary), fitted.predict(cdnow_summary))
    assert old.get_params()["spend"] == "repeat"
