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
