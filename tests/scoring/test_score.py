"""The earlier score file (``--previous``): what is read from it and what is refused."""

from datetime import date

import pandas as pd
import pytest

from keyltv.data.schema import InputError
from keyltv.scoring.score import match_previous, read_previous_tiers


def test_previous_of_a_later_run_is_refused_even_when_it_mixes_days(tmp_path):
    path = tmp_path / "prev.csv"
    pd.DataFrame({"customer_id": ["1", "2", "3"], "tier": ["A", "B", "C"],
                  "as_of": ["2024-05-01", "2024-08-01", "2024-05-01"],
                  "model_version": "keyltv/3", "horizon_days": 182}).to_csv(path, index=False)
    tiers = read_previous_tiers(path)
    assert tiers.attrs | {"source": ""} == {"as_of": date(2024, 8, 1), "model_version": "keyltv/3",
                           "horizon_days": "182", "source": ""}
    with pytest.raises(InputError, match="the file is as of 2024-08-01, after --as-of 2024-07-01"):
        match_previous(tiers, pd.Index(["1", "2"]), path, date(2024, 7, 1))
    match_previous(tiers, pd.Index(["1", "2"]), path, date(2024, 8, 1))  # the same day is fine


def test_the_band_uses_an_earlier_file_only_of_the_same_model_horizon_and_basis(tmp_path):
    from keyltv.scoring.score import comparable_previous, read_previous

    path = tmp_path / "prev.csv"
    pd.DataFrame({"customer_id": ["1", "2"], "tier": ["A", "B"], "predicted_value": [9.0, 4.0],
                  "predicted_profit": [3.0, 1.0], "model_version": "keyltv/3",
                  "horizon_days": 182}).to_csv(path, index=False)
    tiers, values = read_previous(path)
    assert tiers.attrs["ranked_by"] == "profit" and values.tolist() == [3.0, 1.0]
    profit = pd.DataFrame({"predicted_value": [1.0], "predicted_profit": [0.5]})
    assert comparable_previous(tiers, profit, "keyltv/3", 182)
    assert not comparable_previous(tiers, profit, "keyltv/4", 182)
    assert not comparable_previous(tiers, profit, "keyltv/3", 365)
    assert not comparable_previous(tiers, profit.drop(columns="predicted_profit"), "keyltv/3", 182)
    pd.DataFrame({"customer_id": ["1"], "tier": ["A"]}).to_csv(path, index=False)
    assert read_previous(path)[1] is None  # tiers alone: nothing to tell a move from a tie
