import pandas as pd
import pytest

from keyltv.data.accounts import load_accounts
from keyltv.data.schema import InputError
from tests.conftest import write_csv


def test_accounts_types_and_duplicates(tmp_path):
    path = write_csv(tmp_path, "customer_id,industry,employees\n007,retail,12\n8,,40\n", "acc.csv")
    accounts = load_accounts(path)
    assert accounts.index.tolist() == ["007", "8"]
    assert isinstance(accounts["industry"].dtype, pd.CategoricalDtype)
    assert accounts["employees"].tolist() == [12.0, 40.0]
    # Codes written with a leading zero stay as written: 01234 is a postcode, not 1234.0.
    path = write_csv(tmp_path, "customer_id,zip,sic,score\n1,01234,0111,07.5\n2,80331,5812,3\n",
                     "codes.csv")
    codes = load_accounts(path)
    assert codes["zip"].tolist() == ["01234", "80331"] and codes["sic"].tolist() == ["0111", "5812"]
    assert codes["score"].tolist() == [7.5, 3.0]  # a leading zero before a decimal point: a number
    # Codes without a leading zero are numbers unless named as text.
    path = write_csv(tmp_path, "customer_id,region,size\n1,12,3\n2,7,4\n", "regions.csv")
    named = load_accounts(path, text_columns=["region"])
    assert isinstance(named["region"].dtype, pd.CategoricalDtype)
    assert named["region"].tolist() == ["12", "7"] and named["size"].tolist() == [3.0, 4.0]
    typed = pd.DataFrame({"customer_id": ["1", "2"], "region": [12, 7]})  # an int column
    assert load_accounts(typed, text_columns=["region"])["region"].tolist() == ["12", "7"]
    with pytest.raises(InputError, match="account_text_columns names 'regoin', which is not"):
        load_accounts(path, text_columns=["regoin"])
    path = write_csv(tmp_path, "customer_id,industry\n007,retail\n007,food\n", "dup.csv")
    with pytest.raises(InputError, match="duplicated customer id '007'"):
        load_accounts(path)


def test_accounts_table_refuses_repeated_columns_and_header_only(tmp_path):
    path = write_csv(tmp_path, "customer_id,size,size\n1,a,b\n", "acc.csv")
    with pytest.raises(InputError, match="column 'size' appears more than once"):
        load_accounts(path)
    path = write_csv(tmp_path, "customer_id,size\n", "acc.csv")
    with pytest.raises(InputError, match="no account rows"):
        load_accounts(path)
    path = write_csv(tmp_path, "customer_id,size\n1,a\n", "acc.csv")
    assert load_accounts(path).attrs["source"] == str(path)


def test_an_account_table_split_over_files_has_no_file_column(tmp_path):
    (tmp_path / "acc").mkdir()
    (tmp_path / "acc" / "a.csv").write_text("customer_id,region\n1,north\n")
    (tmp_path / "acc" / "b.csv").write_text("customer_id,region\n2,south\n")
    accounts = load_accounts(tmp_path / "acc")
    assert accounts.to_dict() == {"region": {"1": "north", "2": "south"}}


def test_the_account_table_reads_numbers_in_the_configured_form(tmp_path):
    path = write_csv(tmp_path, "customer_id;employees;revenue;region\n"
                               "00001;1.234;12,5;north\n00002;7;1.000,25;south\n", "acc.csv")
    accounts = load_accounts(path, decimal_separator=",", thousands_separator=".")
    assert accounts["employees"].tolist() == [1234.0, 7.0]
    assert accounts["revenue"].tolist() == [12.5, 1000.25]
    assert isinstance(accounts["region"].dtype, pd.CategoricalDtype)
    # The plain form reads neither '12,5' nor '1_000' as a number.
    plain = load_accounts(write_csv(tmp_path, "customer_id,a,b\n1,\"12,5\",1_000\n2,3,4\n"))
    assert isinstance(plain["a"].dtype, pd.CategoricalDtype)
    assert isinstance(plain["b"].dtype, pd.CategoricalDtype)


@pytest.mark.parametrize("marker", ["n/a", "NULL", "#N/A", "NA", " nan ", "-", "?"])
def test_a_missing_marker_in_a_column_of_numbers_is_read_as_missing_and_counted(tmp_path, marker):
    path = write_csv(tmp_path, "customer_id,employees,region\n"
                               f"1,12,NA\n2,{marker},EU\n3,40,NA\n4,,EU\n", "acc.csv")
    accounts = load_accounts(path)
    assert accounts["employees"].dtype == float
    assert accounts["employees"].isna().tolist() == [False, True, False, True]
    assert accounts.attrs["notes"] == {"attribute_values_read_as_missing": 1}
    assert accounts.attrs["messages"] == [
        f"{path}: column 'employees': {marker.strip()!r} in 1 row(s) read as missing, as every "
        "other value of the column is a number"]
    # Among words, 'NA' is North America: a level, as written.
    assert accounts["region"].cat.categories.tolist() == ["EU", "NA"]


def test_markers_count_per_value_and_are_levels_where_no_value_is_a_number(tmp_path):
    path = write_csv(tmp_path, "customer_id,employees,revenue,note\n1,n/a,1.5,n/a\n"
                               "2,N/A,null,n/a\n3,7,2,none\n", "acc.csv")
    accounts = load_accounts(path)
    assert accounts["employees"].tolist()[2] == 7.0 and accounts["revenue"].tolist()[0] == 1.5
    assert accounts.attrs["notes"] == {"attribute_values_read_as_missing": 3}
    assert accounts.attrs["messages"] == [
        f"{path}: column 'employees': 'n/a' in 1 row(s), 'N/A' in 1 row(s) read as missing, as "
        "every other value of the column is a number",
        f"{path}: column 'revenue': 'null' in 1 row(s) read as missing, as every other value "
        "of the column is a number"]
    assert accounts["note"].tolist() == ["n/a", "n/a", "none"]  # no number: kept as levels


def test_a_stray_word_in_a_column_of_numbers_is_refused(tmp_path):
    rows = "".join(f"{i},{i * 10}\n" for i in range(1, 10))
    path = write_csv(tmp_path, f"customer_id,employees\n{rows}10,1O0\n", "acc.csv")
    with pytest.raises(InputError, match=r"acc.csv: column 'employees': value '1O0' is not a "
                                         r"number, while 9 of its 10 values are; .* name the "
                                         "column in account_text_columns"):
        load_accounts(path)
    # Named as text, or below nine numbers in ten: categories, as written.
    assert load_accounts(path, text_columns=["employees"])["employees"].tolist()[-1] == "1O0"
    assert load_accounts(path, refuse_stray_text=False)["employees"].dtype == "category"
    fewer = write_csv(tmp_path, f"customer_id,size\n{rows[:-5]}9,large\n", "fewer.csv")
    assert load_accounts(fewer)["size"].tolist()[-2:] == ["80", "large"]


@pytest.mark.parametrize("pad", ["\u200b", "\u2060", "\ufeff", "\u00a0 ", "\u200e"],
                         ids=["zero-width-space", "word-joiner", "bom", "no-break-space", "lrm"])
def test_account_ids_are_stripped_of_invisible_characters_and_counted(tmp_path, pad):
    path = write_csv(tmp_path, f"customer_id,size\n007{pad},3\n{pad}8,4\n9,5\n", "acc.csv")
    accounts = load_accounts(path)
    assert accounts.index.tolist() == ["007", "8", "9"]
    assert accounts.attrs["notes"] == {"account_ids_stripped_of_whitespace": 2}
    path = write_csv(tmp_path, f"customer_id,size\n007{pad},3\n007,4\n", "dup.csv")
    with pytest.raises(InputError, match="duplicated customer id '007'"):
        load_accounts(path)


def test_a_column_of_iso_dates_is_read_as_days(tmp_path):
    path = write_csv(tmp_path, "customer_id,customer_since,contract_end,note\n"
                               "1,2021-03-04,2025-1-31,2021-03-04\n"
                               "2,2019-12-31T08:30:00,n/a,see file\n3,,9999-12-31,\n", "acc.csv")
    accounts = load_accounts(path)
    assert str(accounts["customer_since"].dtype) == "datetime64[s]"
    assert accounts["customer_since"].tolist()[:2] == [pd.Timestamp("2021-03-04"),
                                                       pd.Timestamp("2019-12-31")]  # time dropped
    # An open end (9999-12-31) is a date like any other; 'n/a' a missing one.
    assert accounts["contract_end"].tolist()[::2] == [pd.Timestamp("2025-01-31"),
                                                      pd.Timestamp("9999-12-31")]
    assert isinstance(accounts["note"].dtype, pd.CategoricalDtype)  # half words: text
    assert accounts.attrs["notes"] == {"attribute_values_read_as_missing": 1,
                                       "attribute_columns_read_as_dates": 2}
    assert accounts.attrs["messages"] == [
        f"{path}: column 'contract_end': 'n/a' in 1 row(s) read as missing, as 2 of its 3 "
        "values are dates"]
    # Named as text (or not read as dates, as for an earlier score file): as written.
    assert load_accounts(path, text_columns=["customer_since"])["customer_since"].tolist()[0] \
        == "2021-03-04"
    assert isinstance(load_accounts(path, read_dates=False)["contract_end"].dtype,
                      pd.CategoricalDtype)


def test_a_few_words_among_dates_are_read_as_missing_more_leave_the_column_text(tmp_path):
    days = [f"2022-01-{d:02d}" for d in range(1, 20)]
    rows = "".join(f"{i},{day},{day}\n" for i, day in enumerate(days))
    path = write_csv(tmp_path, f"customer_id,a,b\n{rows}19,tbd,tbd\n20,2022-02-01,open\n",
                     "acc.csv")
    accounts = load_accounts(path)
    # 20 dates in 21 values (95%) are a column of dates; 19 in 21 are words with dates.
    assert str(accounts["a"].dtype) == "datetime64[s]" and accounts["a"].isna().sum() == 1
    assert isinstance(accounts["b"].dtype, pd.CategoricalDtype)
    assert accounts.attrs["messages"] == [
        f"{path}: column 'a': 'tbd' in 1 row(s) read as missing, as 20 of its 21 values are "
        "dates"]


def test_dates_in_the_configured_format_and_typed_parquet_dates(tmp_path):
    path = write_csv(tmp_path, "customer_id;since\n1;04.03.2021\n2;31.12.2019\n", "acc.csv")
    assert isinstance(load_accounts(path)["since"].dtype, pd.CategoricalDtype)
    since = load_accounts(path, date_format="%d.%m.%Y")["since"]
    assert since.tolist() == [pd.Timestamp("2021-03-04"), pd.Timestamp("2019-12-31")]
    typed = pd.DataFrame({
        "customer_id": ["1", "2"],
        "since": pd.to_datetime(["2021-03-04", "2019-12-31"]).date,  # a Parquet DATE
        "seen": pd.to_datetime(["2021-03-04 23:30", None]).tz_localize("UTC")})
    typed.to_parquet(tmp_path / "acc.parquet")
    accounts = load_accounts(tmp_path / "acc.parquet")
    assert accounts["since"].tolist() == [pd.Timestamp("2021-03-04"), pd.Timestamp("2019-12-31")]
    assert accounts["seen"].tolist()[0] == pd.Timestamp("2021-03-04")  # its UTC day
    assert accounts.attrs["notes"] == {"attribute_columns_read_as_dates": 2}
