from __future__ import annotations

import pandas as pd
import pytest


def _season_inputs():
    from datetime import date

    from keyltv.data.transactions import load_transactions
    from keyltv.inputs import Inputs
    from tests.conftest import frame

    log = load_transactions(frame([("a", "2023-01-02", 10.0), ("a", "2023-03-10", 40.0),
                                   ("a", "2024-02-01", 7.0)]), label="season")
    return Inputs(log=log, accounts=None, as_of=date(2024, 3, 2))


@pytest.mark.parametrize(("predicted", "horizon", "said"), [
    (100.0, 60, True), (380.0, 60, False), (100.0, 365, False)])
def test_a_season_unlike_the_prediction_is_said(predicted, horizon, said):
    from keyltv.workflows.score_job import season_warning

    scores = pd.DataFrame({"trailing_value": [100.0], "predicted_value": [predicted]})
    got = season_warning(_season_inputs(), horizon, scores)
    assert bool(got) is said
    if said:  # a year ago: 40 after 2023-03-03 against 10 before; now 1.00x
        assert got[0].startswith("a year ago the accounts then on the books brought 4.00x "
                                 "their trailing 60 days in the 60 days from 2023-03-03; "
                                 "this run predicts 1.00x")
        assert "the predicted total is about 0.25x of what they will bring" in got[0]


def test_the_earlier_file_is_read_in_the_configs_number_form(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from keyltv.config import Config
    from keyltv.workflows import score_job

    class Scored(Exception):
        """Stops the job where the earlier file's values reach the scoring."""

    def score_accounts(*args, previous_value, **kwargs):
        raise Scored(previous_value)

    monkeypatch.setattr(score_job, "score_accounts", score_accounts)
    path = tmp_path / "prev.csv"
    path.write_text("customer_id;tier;predicted_value\na;A;1,5\n", encoding="utf-8")
    with pytest.raises(Scored) as scored:
        score_job.score_bundle(_season_inputs(), Config(decimal_separator=","),
                               SimpleNamespace(horizon_days=60), "keyltv/1", path)
    assert scored.value.args[0].to_dict() == {"a": 1.5}


@pytest.mark.slow  # a selection backtest and a refit with LightGBM: about 10 s on two cores
def test_a_model_trained_with_an_id_and_a_date_scores_a_later_table_as_trained(caplog):
    import logging

    import cloudpickle
    import numpy as np

    from keyltv import workflows
    from keyltv.config import Config
    from keyltv.evaluation.backtest import select_champion
    from keyltv.inputs import ignored_attributes
    from keyltv.workflows.train_job import fit_bundle

    config = Config(horizon_days=182, models=("trailing", "lightgbm"), training={"n_cutoffs": 2})
    tx, accounts = simulate_small_book()
    inputs = workflows.load_inputs(tx, accounts, config, None, label="sim")
    with caplog.at_level(logging.WARNING, logger="keyltv"):
        ignored_attributes(inputs, config)  # as train says it, once
        result, champion = select_champion(inputs.log, inputs.as_of, config, inputs.accounts)
        bundle = cloudpickle.loads(cloudpickle.dumps(
            fit_bundle(inputs, config, "lightgbm", result)))
    # Said once; the backtest and the refits leave the column out without a word.
    assert [r.getMessage()[:26] for r in caplog.records] == ["<DataFrame>: column 'vat':"]
    assert bundle.ignored_attributes == {"vat": "60 distinct values in 60 non-blank rows"}
    learned = list(bundle.value_model.feature_names_in_)
    assert "attr_customer_since_days_before" in learned and "attr_vat" not in learned
    # A month later: new VAT numbers, the same dates. Nothing unseen, nothing re-decided.
    later = accounts.assign(vat=[f"FR{i}" for i in range(len(accounts))])
    inputs = workflows.load_inputs(tx, later, config, inputs.as_of, label="sim")
    scored = workflows.score_bundle(inputs, config, bundle, "1")
    assert scored.notes["attribute_values_unseen_in_training"] == 0
    assert scored.notes["attribute_columns_ignored_as_ids"] == 1
    assert len(scored.scores) == inputs.log.n_accounts
    assert np.isfinite(scored.scores["predicted_value"]).all()


def simulate_small_book():
    """60 simulated accounts over two years, with a VAT number and a customer_since each."""
    import numpy as np

    from keyltv.data.simulate import simulate_b2b

    tx, accounts = simulate_b2b(60, seed=8, start="2023-01-01", end="2025-01-01")
    rng = np.random.default_rng(1)
    accounts["vat"] = [f"DE{100_000_000 + 7 * i}" for i in range(len(accounts))]
    accounts["customer_since"] = (pd.Timestamp("2019-01-01") + pd.to_timedelta(
        rng.integers(0, 1800, len(accounts)), unit="D")).strftime("%Y-%m-%d")
    return tx, accounts


def test_scoring_without_the_models_text_columns_is_refused():
    # Trained with employees read as categories, scored without that config: every value
    # was a level the model never saw, and the scores moved with nothing said (audit 28).
    from types import SimpleNamespace

    from keyltv.config import Config
    from keyltv.data.schema import InputError
    from keyltv.workflows.score_job import check_text_columns

    accounts = pd.DataFrame({"employees": [12.0, 40.0]}, index=["a", "b"])
    accounts.attrs["source"] = "acc.csv"
    inputs = SimpleNamespace(accounts=accounts)
    bundle = SimpleNamespace(account_text_columns=("employees",))
    with pytest.raises(InputError, match=r"^acc\.csv: column\(s\) 'employees': the model was "
                                         r"trained with them in account_text_columns"):
        check_text_columns(inputs, bundle, Config())
    check_text_columns(inputs, bundle, Config(account_text_columns=("employees",)))
    check_text_columns(SimpleNamespace(accounts=None), bundle, Config())  # no table: fine
    check_text_columns(inputs, SimpleNamespace(), Config())  # a bundle from before: fine
