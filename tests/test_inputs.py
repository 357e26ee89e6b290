from __future__ import annotations

from keyltv import workflows
from keyltv.config import Config

CONFIG = Config(horizon_days=182, models=("trailing", "bgnbd", "lightgbm"),
                training={"n_cutoffs": 2})


def test_accounts_first_seen_after_as_of_are_counted(tiny_rows):
    from datetime import date

    from tests.conftest import frame

    # Account 00003 buys only from 2024-03-05: in the log, not scored at 2024-03-01.
    inputs = workflows.load_inputs(frame(tiny_rows), None, CONFIG, date(2024, 3, 1), label="t")
    assert inputs.notes["accounts_first_seen_on_or_after_as_of"] == 1
    assert inputs.notes["lines_on_or_after_as_of"] == 1


def test_the_config_names_account_columns_read_as_text(tiny_rows):
    from datetime import date

    import pandas as pd

    from tests.conftest import frame

    accounts = pd.DataFrame({"customer_id": ["00042", "7"], "region": ["12", "7"]})
    config = CONFIG.with_overrides(account_text_columns=["region"])
    inputs = workflows.load_inputs(frame(tiny_rows), accounts, config, date(2024, 3, 1),
                                   label="t")
    assert isinstance(inputs.accounts["region"].dtype, pd.CategoricalDtype)
