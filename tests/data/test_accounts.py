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
