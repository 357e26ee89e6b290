"""Properties of the scoring path over random small logs, and reproducibility.

Training is expensive, so bundles are fitted once per module on a simulated log; then
hypothesis draws small transaction logs (odd ids, returns, zero lines, outliers, dates
with and without a time, an optional ``as_of``), writes them as CSV files and runs
them through validation, features and scoring exactly as ``keyltv score`` does. The
pipeline must either refuse the input with an :class:`InputError` or produce a score
table that keeps its invariants.
"""

from __future__ import annotations

import csv
import dataclasses
import tempfile
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyltv import workflows
from keyltv.config import Config
from keyltv.data.schema import InputError
from keyltv.data.simulate import simulate_b2b
from keyltv.evaluation.backtest import select_champion
from keyltv.models.baseline import TrailingValueRegressor

CONFIG = Config.model_validate({"horizon_days": 182, "models": ["trailing", "bgnbd", "lightgbm"],
                                "training": {"n_cutoffs": 1}})
SETTINGS = settings(max_examples=30, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


def fit(transactions: pd.DataFrame):
    inputs = workflows.load_inputs(transactions, None, CONFIG, None, label="simulated")
    result, _ = select_champion(inputs.log, inputs.as_of, CONFIG)
    return inputs, result, workflows.fit_bundle(inputs, CONFIG, "lightgbm", result)


@pytest.fixture(scope="module")
def fitted():
    transactions, _ = simulate_b2b(120, seed=3, start="2022-01-01", end="2025-01-01")
    return (transactions, *fit(transactions))


@pytest.fixture(scope="module")
def bundles(fitted) -> dict[str, object]:
    """The LightGBM champion, BG/NBD as champion, and the no-companion fallbacks."""
    _, inputs, _, gbm = fitted
    assert gbm.probabilistic is not None and gbm.events is not None
    trailing = TrailingValueRegressor().fit(gbm_features(inputs, gbm))
    return {
        "lightgbm": gbm,
        "bgnbd": dataclasses.replace(gbm, champion="bgnbd", value_model=gbm.probabilistic),
        "trailing-with-fallbacks": dataclasses.replace(
            gbm, champion="trailing", value_model=trailing, probabilistic=None, events=None),
    }


def gbm_features(inputs, bundle) -> pd.DataFrame:
    from keyltv.features import account_features

    return account_features(inputs.log, inputs.as_of, bundle.horizon_days)


FIRST_DAY = date(2023, 1, 1)
ids = st.sampled_from(["007", "7", "00042", "A-1", "x y", "Müller GmbH", "0", "1e3"])
days = st.integers(0, 730).map(lambda k: FIRST_DAY + timedelta(days=k))
stamps = st.tuples(days, st.sampled_from(["", " 00:00:00", " 13:45:10", "T08:00:00"]))
amounts = st.one_of(
    st.decimals(-2000, 20000, places=2, allow_nan=False, allow_infinity=False).map(str),
    st.sampled_from(["0", "0.00", "-0.01", "2500000000", "1E3", "  12.5  "]),
)
lines = st.lists(st.tuples(ids, stamps.map(lambda s: s[0].isoformat() + s[1]), amounts),
                 min_size=1, max_size=30)
as_ofs = st.one_of(st.none(), st.integers(-30, 800).map(lambda k: FIRST_DAY + timedelta(days=k)))


def write_log(folder: str, rows: list[tuple[str, str, str]]) -> Path:
    path = Path(folder) / "tx.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["customer_id", "date", "amount"])
        writer.writerows(rows)
    return path


def day_of(stamp: str) -> date:
    return date.fromisoformat(stamp[:10])


@SETTINGS
@given(rows=lines, as_of=as_ofs, model=st.sampled_from(["lightgbm", "bgnbd",
                                                          "trailing-with-fallbacks"]))
def test_scoring_random_logs_refuses_or_keeps_the_invariants(bundles, rows, as_of, model):
    bundle = bundles[model]
    first = min(day_of(stamp) for _, stamp, _ in rows)
    with tempfile.TemporaryDirectory() as folder:
        path = write_log(folder, rows)
        try:
            inputs = workflows.load_inputs(path, None, CONFIG, as_of)
        except InputError as exc:  # the documented refusals for valid lines
            distinct = sorted({day_of(stamp) for _, stamp, _ in rows})
            gaps = [(b - a).days for a, b in zip(distinct[:-1], distinct[1:], strict=True)]
            if as_of is None and gaps and gaps[-1] > 365:  # a lone last day sets no as-of
                assert "days after every other line" in str(exc), exc
                return
            if gaps and gaps[0] > 365:  # nor is a lone first day a customer's first order
                assert "days before every other line" in str(exc), exc
                return
            assert as_of is not None and as_of <= first, exc
            assert str(exc).startswith(f"{path}: --as-of {as_of} is on or before")
            return
        try:
            scores = workflows.score_bundle(inputs, CONFIG, bundle, "keyltv/test").scores
        except InputError as exc:  # no order at all before the cut: nothing to predict from
            nets: dict[tuple[str, date], Decimal] = {}  # exact, as the log's daily sums
            for i, stamp, amount in rows:
                if day_of(stamp) < inputs.as_of:
                    key = (i, day_of(stamp))
                    nets[key] = nets.get(key, Decimal(0)) + Decimal(amount.strip())
            assert max(nets.values()) <= 0
            assert "no account has a positive day before" in str(exc)
            return
    cut = inputs.as_of
    seen = {i for i, stamp, _ in rows if day_of(stamp) < cut}
    assert sorted(scores["customer_id"]) == sorted(seen)  # one row per account, ids as typed
    numbers = scores[["predicted_value", "predicted_value_low", "predicted_value_high",
                      "predicted_orders", "p_alive", "decline_risk", "growth_potential"]]
    assert np.isfinite(numbers.to_numpy(dtype=float)).all()
    assert scores["p_alive"].between(0, 1).all()
    assert scores["decline_risk"].between(0, 1).all()
    assert scores["growth_potential"].between(0, 1).all()
    assert (scores["predicted_value"] >= 0).all() and (scores["predicted_orders"] >= 0).all()
    assert (scores["predicted_value_low"] <= scores["predicted_value"]).all()
    assert (scores["predicted_value"] <= scores["predicted_value_high"]).all()
    assert scores["tier"].isin(["A", "B", "C", "D"]).all()
    assert (scores["as_of"] == cut.isoformat()).all()


JUNK = {
    "customer_id": ["", "  ", "\t"],
    "date": ["", "abc", "2024-13-01", "01/02/2024", "2024-01-01T10:00:00Z", "inf", "epoch",
             "45292", "1024-01-01", "2024-01-01 10:00+01"],
    "amount": ["", "abc", "nan", "inf", "-Infinity", "1e400", "1,5", "1e16", "€5", "-"],
}
broken_cells = st.sampled_from(list(JUNK)).flatmap(
    lambda column: st.tuples(st.just(column), st.sampled_from(JUNK[column])))


@SETTINGS
@given(rows=st.lists(st.tuples(ids, stamps.map(lambda s: s[0].isoformat() + s[1]), amounts),
                     min_size=1, max_size=20),
       cell=broken_cells, where=st.integers(0, 19))
def test_a_broken_cell_is_refused_with_its_column_and_value(rows, cell, where):
    column, value = cell
    where %= len(rows)
    broken = list(rows[where])
    broken[list(JUNK).index(column)] = value
    rows = [*rows[:where], tuple(broken), *rows[where + 1:]]
    with tempfile.TemporaryDirectory() as folder:
        path = write_log(folder, rows)
        with pytest.raises(InputError) as info:
            workflows.load_inputs(path, None, CONFIG, None)
    message = str(info.value)
    assert message.startswith(f"{path}: column {column!r}: ") and "\n" not in message
    assert repr(value.strip()) in message


def test_same_inputs_config_and_seed_give_identical_predictions_and_metrics(fitted, bundles):
    transactions, inputs, result, bundle = fitted
    shuffled = transactions.sample(frac=1.0, random_state=1)  # same lines, another order
    again_inputs, again_result, again = fit(shuffled)
    assert again_inputs.log.fingerprint == inputs.log.fingerprint
    pd.testing.assert_frame_equal(again_result.table.drop(columns="fit_seconds"),
                                  result.table.drop(columns="fit_seconds"))
    features = gbm_features(inputs, bundle)
    pd.testing.assert_frame_equal(again.predict(features), bundle.predict(features))
    scores = workflows.score_bundle(inputs, CONFIG, bundle, "v").scores
    pd.testing.assert_frame_equal(workflows.score_bundle(again_inputs, CONFIG, again, "v").scores,
                                  scores)


def test_another_seed_is_a_different_model(fitted):
    _, inputs, result, bundle = fitted
    other = CONFIG.with_overrides(seed=CONFIG.seed + 1)
    refit = workflows.fit_bundle(inputs, other, "lightgbm", result)
    features = gbm_features(inputs, bundle)
    assert not np.array_equal(refit.predict(features)["predicted_value"],
                              bundle.predict(features)["predicted_value"])


@pytest.mark.parametrize("model", ["lightgbm", "bgnbd", "trailing-with-fallbacks"])
def test_an_accounts_outputs_do_not_depend_on_the_accounts_scored_with_it(fitted, bundles,
                                                                        model):
    # Scoring one account (MLflow serving) or a subset gives what scoring the book gives:
    # the margin shrinkage and the fallback's typical gap come from the training book.
    _, inputs, _, _ = fitted
    bundle = bundles[model]
    features = gbm_features(inputs, bundle)
    rows = [0, 3, 7]
    # Row 3 as a one-order account (no gap), which the fallback gives the typical gap.
    features.iloc[3, features.columns.get_loc("mean_gap_days")] = np.nan
    book = bundle.predict(features)
    assert "predicted_profit" in book  # the simulator has margins
    pd.testing.assert_frame_equal(bundle.predict(features.iloc[rows]), book.iloc[rows])
    for row in rows:
        pd.testing.assert_frame_equal(bundle.predict(features.iloc[[row]]), book.iloc[[row]])


def test_score_accounts_takes_an_id_column_and_refuses_unmatched_previous_tiers(fitted, bundles):
    from keyltv.scoring.score import score_accounts

    _, inputs, _, bundle = fitted
    features = gbm_features(inputs, bundle)
    scored = score_accounts(bundle, features, as_of=inputs.as_of, model_version="v",
                            config=CONFIG)
    # The shape `keyltv features` writes: the id as a column, not row numbers.
    flat = score_accounts(bundle, features.rename_axis("customer_id").reset_index(),
                          as_of=str(inputs.as_of), model_version="v", config=CONFIG)
    pd.testing.assert_frame_equal(flat, scored)
    with pytest.raises(InputError, match="features: model input column 'trend' is missing"):
        score_accounts(bundle, features.drop(columns="trend"), as_of=inputs.as_of,
                       model_version="v", config=CONFIG)
    # A hand-edited feature file: a blank input no model handles, or an infinite one.
    blank, endless = features.copy(), features.copy()
    blank.iloc[1, blank.columns.get_loc("frequency")] = np.nan
    endless.iloc[2, endless.columns.get_loc("trend")] = np.inf
    with pytest.raises(InputError, match=r"features: column 'frequency': blank or infinite "
                                         rf"value in 1 row\(s\), the first for account "
                                         rf"'{features.index[1]}'"):
        score_accounts(bundle, blank, as_of=inputs.as_of, model_version="v", config=CONFIG)
    with pytest.raises(InputError, match="features: column 'trend': infinite value in 1 row"):
        score_accounts(bundle, endless, as_of=inputs.as_of, model_version="v", config=CONFIG)
    with pytest.raises(InputError, match="features: duplicated customer id"):
        score_accounts(bundle, pd.concat([features, features.head(1)]), as_of=inputs.as_of,
                       model_version="v", config=CONFIG)
    # A score file read back with its ids as numbers matches no account.
    lost = pd.Series("A", index=range(len(features)))
    with pytest.raises(InputError, match="previous: column 'customer_id': none of its"):
        score_accounts(bundle, features, as_of=inputs.as_of, model_version="v", config=CONFIG,
                       previous=lost)


def test_scoring_with_a_model_older_than_its_horizon_says_so(fitted):
    transactions, inputs, _, bundle = fitted
    assert not any("trained as of" in w
                   for w in workflows.score_bundle(inputs, CONFIG, bundle, "v").warnings)
    later = bundle.trained_as_of + timedelta(days=bundle.horizon_days + 1)
    late_inputs = workflows.load_inputs(transactions, None, CONFIG, later, label="simulated")
    warnings = workflows.score_bundle(late_inputs, CONFIG, bundle, "v").warnings
    assert (f"model v was trained as of {bundle.trained_as_of}, 183 days before --as-of "
            f"{later}: more than its 182-day horizon") in warnings
    # The export stopped long before --as-of: every account only looks idle.
    idle = late_inputs.notes["days_after_last_transaction"]  # the same count as the note's
    assert any(w.startswith(f"the log ends {late_inputs.log.last_date}: the {idle} days up to "
                            f"--as-of {later} have no line") for w in warnings)
    # A model of a later day, and a log that lost the margins the model was trained with.
    earlier = bundle.trained_as_of - timedelta(days=30)
    no_margin = transactions.drop(columns="margin")
    warnings = workflows.score_bundle(
        workflows.load_inputs(no_margin, None, CONFIG, earlier, label="simulated"),
        CONFIG, bundle, "v").warnings
    assert f"model v was trained as of {bundle.trained_as_of}, after --as-of {earlier}: it " \
           "learned from the period it now predicts" in warnings
    assert any(w.startswith("the model was trained with margins and this log has none")
               for w in warnings)


def test_accounts_without_an_order_are_scored_zero_and_counted(fitted):
    transactions, inputs, _, bundle = fitted
    day = str(inputs.as_of - timedelta(days=6))
    extra = pd.DataFrame({"customer_id": ["credit-only", "buyer"], "date": [day, day],
                          "amount": [-500.0, 500.0], "margin": [-100.0, 100.0]})
    both = pd.concat([transactions, extra], ignore_index=True)
    result = workflows.score_bundle(
        workflows.load_inputs(both, None, CONFIG, inputs.as_of, label="simulated"),
        CONFIG, bundle, "v")
    rows = result.scores.set_index("customer_id")
    # One credit note is no first purchase: nothing predicted, nothing flagged.
    credit = rows.loc["credit-only"]
    assert credit[["predicted_value", "predicted_value_high", "predicted_orders", "p_alive",
                   "growth_potential"]].eq(0).all()
    assert not credit[["key_account", "at_risk", "high_potential"]].any()
    assert rows.loc["buyer", "predicted_orders"] > 0
    assert result.notes["accounts_without_orders_scored_zero"] == 1


def test_a_log_without_any_order_is_refused_with_its_sign(fitted):
    transactions, inputs, _, bundle = fitted
    negated = transactions.assign(amount=-transactions["amount"].abs())
    flipped = workflows.load_inputs(negated, None, CONFIG, inputs.as_of, label="simulated")
    with pytest.raises(InputError, match=r"^simulated: column 'amount': no account has a "
                                         r"positive day before .* if the export signs sales "
                                         r"negative, negate the column$"):
        workflows.score_bundle(flipped, CONFIG, bundle, "v")


@pytest.mark.parametrize(("factor", "said"), [(1.0, False), (3.0, False), (0.001, True),
                                              (100.0, True)])
def test_money_in_other_units_than_the_training_book_is_said(fitted, factor, said):
    transactions, inputs, _, bundle = fitted
    scaled = transactions.assign(amount=transactions["amount"] * factor,
                                 margin=transactions["margin"] * factor)
    warnings = workflows.score_bundle(
        workflows.load_inputs(scaled, None, CONFIG, inputs.as_of, label="simulated"),
        CONFIG, bundle, "v").warnings
    money = [w for w in warnings if w.startswith("the median order value of simulated is ")]
    assert bool(money) is said
    if said:
        assert f"({factor:.3g}x, column 'amount')" in money[0]
