"""The earlier score file (``--previous``): what is read from it and what is refused."""

from datetime import date, datetime

import pandas as pd
import pytest

from keyltv.data.schema import InputError, NumberFormat
from keyltv.scoring.score import match_previous, read_previous, read_previous_tiers


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
    # A file cut down to tiers and values does not tell its run: not taken for the same.
    for dropped in ("model_version", "horizon_days"):
        pd.DataFrame({"customer_id": ["1", "2"], "tier": ["A", "B"], "predicted_value": [9.0, 4.0],
                      "predicted_profit": [3.0, 1.0], "model_version": "keyltv/3",
                      "horizon_days": 182}).drop(columns=dropped).to_csv(path, index=False)
        assert not comparable_previous(read_previous(path)[0], profit, "keyltv/3", 182)
    pd.DataFrame({"customer_id": ["1"], "tier": ["A"]}).to_csv(path, index=False)
    assert read_previous(path)[1] is None  # tiers alone: nothing to tell a move from a tie


def test_the_band_needs_the_same_tier_rule_and_training_run_where_both_files_tell(tmp_path):
    from keyltv.scoring.score import comparable_previous

    path = tmp_path / "prev.csv"
    earlier = pd.DataFrame({"customer_id": ["1", "2"], "tier": ["A", "B"],
                            "predicted_value": [9.0, 4.0], "model_version": "keyltv/1",
                            "horizon_days": 182, "tier_rule": "share_of_accounts 0.2/0.3/0.3",
                            "model_run_id": "4f3a9c"})
    earlier.to_csv(path, index=False)
    tiers = read_previous(path)[0]
    assert (tiers.attrs["tier_rule"], tiers.attrs["model_run_id"]) == (
        "share_of_accounts 0.2/0.3/0.3", "4f3a9c")
    value = pd.DataFrame({"predicted_value": [1.0]})
    same = {"tier_rule": "share_of_accounts 0.2/0.3/0.3", "run_id": "4f3a9c"}
    assert comparable_previous(tiers, value, "keyltv/1", 182, **same)
    # Audit 29: a cumulative-value run held 51 accounts through a share-of-accounts file,
    # and another project's keyltv/1 passed for this one.
    assert not comparable_previous(tiers, value, "keyltv/1", 182,
                                   **same | {"tier_rule": "cumulative_value 0.8/0.95/0.99"})
    assert not comparable_previous(tiers, value, "keyltv/1", 182, **same | {"run_id": "77e0b1"})
    # A model or file that does not tell (saved before these columns) is not held to them.
    assert comparable_previous(tiers, value, "keyltv/1", 182, tier_rule=None, run_id=None)
    earlier.drop(columns=["tier_rule", "model_run_id"]).to_csv(path, index=False)
    assert comparable_previous(read_previous(path)[0], value, "keyltv/1", 182, **same)
    # A run id that reads as a number would come back rewritten (120000): not told.
    earlier.assign(model_run_id="12e4").to_csv(path, index=False)
    assert "model_run_id" not in read_previous(path)[0].attrs


def test_tier_rule_names_the_method_and_its_cuts():
    from keyltv.config import Tiers
    from keyltv.scoring.rules import tier_rule

    assert tier_rule(Tiers()) == "share_of_accounts 0.2/0.3/0.3"
    assert tier_rule(Tiers(method="cumulative_value")) == "cumulative_value 0.8/0.95/0.99"


# An earlier score file as keyltv writes it, and as a German or French spreadsheet
# re-saves it: semicolons, a byte-order mark, CRLF line ends, decimal commas.
PLAIN_PREVIOUS = ("customer_id,as_of,predicted_value,predicted_profit,tier,model_version\n"
                  "1,2024-05-01,1234.5,12.25,A,keyltv/3\n"
                  "2,2024-05-01,980.0,0.5,B,keyltv/3\n"
                  "3,2024-05-01,7.125,1e-05,C,keyltv/3\n")
EUROPEAN_PREVIOUS = ("\ufeffcustomer_id;as_of;predicted_value;predicted_profit;tier;model_version\r\n"
                     "1;2024-05-01;1234,5;12,25;A;keyltv/3\r\n"
                     "2;2024-05-01;980;0,5;B;keyltv/3\r\n"
                     "3;2024-05-01;7,125;1E-05;C;keyltv/3\r\n")


@pytest.mark.parametrize("numbers, text", [
    (NumberFormat(",", None), EUROPEAN_PREVIOUS),
    (NumberFormat(",", "."), EUROPEAN_PREVIOUS.replace("1234,5", "1.234,5")),
    (NumberFormat(",", "."), PLAIN_PREVIOUS),  # keyltv's own file under a European config
    (NumberFormat(), PLAIN_PREVIOUS),
], ids=["decimal-comma", "thousands-point", "plain-file-european-config", "plain"])
def test_a_spreadsheet_resave_reads_as_the_file_keyltv_wrote(tmp_path, numbers, text):
    path = tmp_path / "prev.csv"
    path.write_text(text, encoding="utf-8", newline="")
    tiers, values = read_previous(path, numbers)
    assert tiers.to_dict() == {"1": "A", "2": "B", "3": "C"}
    assert tiers.attrs | {"source": ""} == {"as_of": date(2024, 5, 1), "ranked_by": "profit",
                                            "model_version": "keyltv/3", "source": ""}
    assert values.to_dict() == {"1": 12.25, "2": 0.5, "3": 1e-05}


def test_a_ranking_value_no_form_reads_is_refused_not_dropped(tmp_path):
    path = tmp_path / "prev.csv"
    path.write_text(EUROPEAN_PREVIOUS, encoding="utf-8", newline="")
    with pytest.raises(InputError) as plain:
        read_previous(path)  # the default config: plain numbers
    assert str(plain.value) == (
        f"{path}: column 'predicted_profit': value '12,25' is not a number; expected a plain "
        "number such as -1234.5 (no currency signs; for 1.234,5 set decimal_separator and "
        "thousands_separator in the config)")
    path.write_text(EUROPEAN_PREVIOUS.replace("0,5", "0,5 EUR"), encoding="utf-8", newline="")
    with pytest.raises(InputError) as european:
        read_previous(path, NumberFormat(",", None))
    assert str(european.value) == (
        f"{path}: column 'predicted_profit': value '0,5 EUR' is not a number; expected a "
        "number such as -1234,5 (decimal_separator ',' in the config; no currency signs), "
        "or -1234.5 as keyltv writes it")


def test_a_column_mixing_both_number_forms_is_refused(tmp_path):
    path = tmp_path / "prev.csv"
    path.write_text(EUROPEAN_PREVIOUS.replace("12,25", "12.25"), encoding="utf-8", newline="")
    with pytest.raises(InputError, match=r"column 'predicted_profit': value '12.25' is written "
                                         r"as keyltv writes numbers, other values in the "
                                         r"config's form .*; write the whole column in one form"):
        read_previous(path, NumberFormat(",", None))


@pytest.mark.parametrize("as_of", ["12/07/2023", "07.12.2023", "2023-13-01", "yesterday"])
def test_an_as_of_that_is_not_iso_is_refused_not_guessed(tmp_path, as_of):
    path = tmp_path / "prev.csv"
    pd.DataFrame({"customer_id": ["1", "2"], "tier": ["A", "B"],
                  "as_of": ["2023-07-01", as_of]}).to_csv(path, index=False)
    with pytest.raises(InputError) as refused:
        read_previous_tiers(path)
    assert str(refused.value) == (
        f"{path}: column 'as_of': value {as_of!r} is not an ISO date; keyltv writes "
        "YYYY-MM-DD and does not guess day-first or month-first (a spreadsheet may have "
        "re-saved it: save the column as YYYY-MM-DD)")


@pytest.mark.parametrize("as_of", [
    ["2023-07-01", "2023-07-01 08:30:00", "2023-7-1T08:30", None],
    [date(2023, 7, 1), date(2023, 6, 1), None, None],
    [datetime(2023, 7, 1, 23, 59), datetime(2023, 6, 1), None, None],
], ids=["iso-text", "parquet-date", "parquet-timestamp"])
def test_an_iso_as_of_in_text_or_a_date_type_is_read(tmp_path, as_of):
    path = tmp_path / "prev.parquet"
    pd.DataFrame({"customer_id": ["1", "2", "3", "4"], "tier": ["A", "B", "C", "D"],
                  "as_of": as_of}).to_parquet(path)
    assert read_previous_tiers(path).attrs["as_of"] == date(2023, 7, 1)


def test_ids_and_model_version_escaped_for_spreadsheets_read_back_raw(tmp_path):
    from keyltv.data.outputs import write_table

    path = tmp_path / "prev.csv"
    write_table(pd.DataFrame({"customer_id": ["=1+1", "@SUM(A1)", "-2+3", "-123", "+44"],
                              "tier": ["A", "B", "C", "D", "D"], "model_version": "=m/3"}),
                path)
    assert "'=1+1" in path.read_text()
    tiers = read_previous_tiers(path)
    assert tiers.to_dict() == {"=1+1": "A", "@SUM(A1)": "B", "-2+3": "C", "-123": "D",
                               "+44": "D"}
    assert tiers.attrs["model_version"] == "=m/3"
