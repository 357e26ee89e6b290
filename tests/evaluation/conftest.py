"""Shared by the backtest and origin tests: a small simulated book and a fast config."""

import pytest

from keyltv.config import Config
from keyltv.data.accounts import load_accounts
from keyltv.data.simulate import simulate_b2b
from keyltv.data.transactions import load_transactions

FAST = Config(horizon_days=182, models=("trailing", "bgnbd", "lightgbm"),
              training={"n_cutoffs": 2, "cutoff_step_days": 91})


@pytest.fixture(scope="module")
def sim():
    tx, accounts = simulate_b2b(300, seed=2)
    return load_transactions(tx), load_accounts(accounts)
