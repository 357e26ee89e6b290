from datetime import date

import numpy as np
import pytest

from keyltv.config import Config
from keyltv.data.io import load_transactions
from keyltv.data.simulate import simulate_b2b
from keyltv.features import future_values
from keyltv.models.bundle import event_labels, fit_value_model, full_trailing_windows, training_data


@pytest.fixture(scope="module")
def short_log():
    tx, _ = simulate_b2b(300, variant="short_history", seed=4)
    return load_transactions(tx)


def test_short_history_uses_shorter_labels_scaled_to_the_horizon(short_log):
    config = Config(horizon_days=182, training={"n_cutoffs": 1, "min_feature_days": 90})
    data = training_data(short_log, date(2021, 9, 1), config, None)
    assert data.stacked_X is not None
    assert "scaled to 182" in data.note
    (cutoff,) = data.cutoffs
    label_days = (date(2021, 9, 1) - cutoff).days
    assert label_days < 182
    raw = future_values(short_log, cutoff, label_days, data.stacked_X.index)["value"].to_numpy()
    scaled = data.stacked_y["value"].to_numpy()
    factor = scaled[raw > 0] / raw[raw > 0]
    # Per-account BG/NBD extrapolation: never more than a flat rate would give.
    assert (factor > 1).all() and (factor <= 182 / label_days + 1e-9).all()


def test_too_short_history_leaves_supervised_models_out(short_log):
    config = Config(horizon_days=182)
    data = training_data(short_log, date(2021, 3, 1), config, None)
    assert data.stacked_X is None and "no label window" in data.note


def test_event_labels():
    decline, growth = event_labels([100, 100, 0, -5], [40, 200, 10, 0], Config())
    assert decline.tolist() == [True, False, False, False]
    assert growth.tolist() == [False, True, True, False]
    assert np.asarray(decline).dtype == bool


def test_run_rate_offset_only_where_training_cutoffs_have_a_whole_horizon(short_log):
    # 15 months of log: the latest cutoff of a 182-day horizon at 2021-09-01 has 61 days
    # (with min_feature_days 60) before it; one 181 days later has 242.
    config = Config(horizon_days=182, training={"n_cutoffs": 2, "min_feature_days": 60})
    short = training_data(short_log, date(2021, 9, 1), config, None)
    assert not full_trailing_windows(short, 182)
    assert not fit_value_model("lightgbm", short, config).run_rate_offset
    whole = training_data(short_log, date(2022, 3, 1), config, None)
    assert (max(whole.cutoffs) - whole.first_date).days >= 182
    assert full_trailing_windows(whole, 182)
    assert fit_value_model("hybrid", whole, config).run_rate_offset
