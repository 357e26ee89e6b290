import re

import pytest

from keyltv.config import Columns, load_config
from keyltv.data.schema import InputError


def test_columns_default_to_the_contract_names():
    assert Columns().roles() == {"customer_id": "customer_id", "date": "date",
                                 "amount": "amount", "margin": "margin", "quantity": None,
                                 "unit_price": None, "unit_cost": None}


def test_quantity_and_prices_replace_amount_and_margin():
    roles = Columns(quantity="Quantity", unit_price="Price", unit_cost="Cost").roles()
    assert (roles["amount"], roles["margin"]) == (None, None)
    assert (roles["quantity"], roles["unit_price"], roles["unit_cost"]) == \
        ("Quantity", "Price", "Cost")
    # amount: null is allowed beside them (it says the same thing).
    assert Columns(amount=None, quantity="Q", unit_price="P").roles()["amount"] is None


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        ("columns:\n  quantity: Quantity\n", "set both quantity and unit_price"),
        ("columns:\n  amount: Sales\n  quantity: Q\n  unit_price: P\n",
         "amount and quantity x unit_price are both mapped"),
        ("columns:\n  amount: null\n", "no amount: map the amount column"),
        ("columns:\n  unit_cost: Cost\n", "unit_cost needs quantity and unit_price"),
        ("columns:\n  margin: GP\n  quantity: Q\n  unit_price: P\n  unit_cost: C\n",
         "margin and unit_cost are both mapped"),
    ],
)
def test_contradictory_column_mappings_are_one_line_config_errors(tmp_path, yaml, message):
    path = tmp_path / "c.yaml"
    path.write_text(yaml)
    with pytest.raises(InputError, match=rf"c\.yaml: field 'columns' = .*: {message}"):
        load_config(path)


@pytest.mark.parametrize(
    ("yaml", "field", "message"),
    [
        ("decimal_separator: ','\nthousands_separator: ','\n", "(top level)",
         "decimal_separator and thousands_separator are both ','"),
        ("decimal_separator: ';'\n", "decimal_separator", "Input should be '.' or ','"),
        ("encoding: cp1252\n", "encoding", "Input should be 'utf-8' or 'latin-1'"),
    ],
)
def test_number_separators_and_encoding_are_checked(tmp_path, yaml, field, message):
    path = tmp_path / "c.yaml"
    path.write_text(yaml)
    with pytest.raises(InputError, match=rf"field '{re.escape(field)}' = .*{re.escape(message)}"):
        load_config(path)


@pytest.mark.parametrize(
    ("yaml", "field", "message"),
    [
        ("seed: -1\n", "seed", "greater than or equal to 0"),
        ("seed: 4294967296\n", "seed", "less than or equal to 4294967295"),
        ("models: []\n", "models", "at least 1 item"),
        ("models: [lightgbm, bgnbd, lightgbm]\n", "models",
         "model 'lightgbm' is listed more than once"),
        # Named as the field itself, not "(top level)" with the whole config (audit 29).
        ("models: [foo]\n", "models", "unknown model 'foo'"),
        # A negative bar promoted a worse model and blamed the bar on a tie (audit 29).
        ("selection:\n  min_improvement: -1\n", "selection.min_improvement",
         "greater than or equal to 0"),
    ],
)
def test_seed_and_models_are_checked_before_any_training(tmp_path, yaml, field, message):
    # Both reached training before (numpy refused the seed, the backtest had no rows):
    # an internal error, exit 1, after the tracking store was created.
    path = tmp_path / "c.yaml"
    path.write_text(yaml)
    with pytest.raises(InputError, match=rf"field '{re.escape(field)}' = .*{re.escape(message)}"):
        load_config(path)


def test_a_german_number_format_is_read_from_the_config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("decimal_separator: ','\nthousands_separator: '.'\n")
    config = load_config(path)
    assert (config.decimal_separator, config.thousands_separator) == (",", ".")


def test_the_reference_config_lists_every_field_with_its_default():
    from pathlib import Path

    import yaml

    from keyltv.config import Config

    path = Path(__file__).resolve().parents[1] / "configs" / "keyltv.yaml"
    listed = yaml.safe_load(path.read_text())
    defaults = Config().model_dump(mode="json")

    def walk(got, want, where):
        assert set(got) == set(want), f"{where}: {sorted(set(want) ^ set(got))}"
        for key, value in want.items():
            if isinstance(value, dict):
                walk(got[key], value, f"{where}.{key}")
            else:
                assert got[key] == value, f"{where}.{key}: {got[key]!r} != default {value!r}"

    walk(listed, defaults, "keyltv.yaml")


def test_tier_value_cuts_stay_within_one(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("tiers:\n  value_cuts: [0.8, 0.95, 1.5]\n")
    with pytest.raises(InputError, match=r"value_cuts must increase within \(0, 1\]"):
        load_config(path)
