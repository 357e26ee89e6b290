from __future__ import annotations

import pytest

from keyltv.workflows.gate import champion_gate
from tests.workflows.conftest import CONFIG


class _Registry:
    """A store whose champion is one model version with these tags."""

    def __init__(self, others=(), **tags):
        self.tags = {"value_model": "hybrid", "metric": "normalized_gini", "metric_value": "0.9",
                     "data_hash": "h1", "horizon_days": "182", "trained_as_of": "2024-01-01",
                     **tags}
        self.others = others  # (version, tags) of the other registered versions

    def champion_version(self):
        return type("Version", (), {"version": "3", "tags": self.tags})()

    def model_versions(self):
        return [self.champion_version(), *(type("Version", (), {"version": v, "tags": t})()
                                           for v, t in self.others)]


NEW = {"value_model": "lightgbm", "metric": "normalized_gini", "metric_value": "0.95",
       "data_hash": "h1", "horizon_days": "182", "trained_as_of": "2024-01-01"}
TABLE = __import__("pandas").DataFrame(
    {"normalized_gini": [0.95, 0.96], "mae": [10.0, 9.0]}, index=["lightgbm", "hybrid"])


@pytest.mark.parametrize(("champion_tags", "new", "promoted", "reason"), [
    ({}, {}, True, "normalized_gini 0.9500 beats version 3 (0.9000, same backtest): +0.0500"),
    # A tie: no bar was set, so none is blamed (audit 29).
    ({}, {"metric_value": "0.9"}, False, "does not beat version 3 (0.9000, same backtest) "
     "(+0.0000); @champion stays on version 3"),
    # Another as_of: the champion's kind, refitted on this holdout, is the bar.
    ({"trained_as_of": "2023-07-01"}, {}, False,
     "does not beat hybrid, version 3's kind, refitted in this backtest (0.9600)"),
    ({"trained_as_of": "2023-07-01", "value_model": "lightgbm"}, {}, True,
     "same kind of model (lightgbm); refitted on newer data (2024-01-01), it replaces it"),
    ({"trained_as_of": "2024-07-01", "value_model": "lightgbm"}, {}, False,
     "trained on later data (2024-07-01) than this model (2024-01-01); @champion stays on "
     "version 3"),
    # A backfill never takes the alias, whatever its kind, gain or horizon.
    ({"trained_as_of": "2024-07-01", "metric_value": "0.5"}, {}, False,
     "trained on later data (2024-07-01) than this model (2024-01-01)"),
    ({"trained_as_of": "2024-07-01", "horizon_days": "365"}, {}, False,
     "trained on later data (2024-07-01) than this model (2024-01-01)"),
    # Another metric, on the same data: compared on the new metric's row of its kind.
    ({}, {"metric": "mae", "metric_value": "10"}, False,
     "mae 10.0000 does not beat hybrid, version 3's kind, refitted in this backtest (9.0000)"),
    ({"data_hash": "h0", "value_model": "pareto"}, {}, True,
     "beats version 3 (0.9000, on a different backtest): +0.0500"),
    ({"horizon_days": "365"}, {}, True, "predicts another horizon (365 days); replaced"),
    # A longer export cut at the same as_of trains on the same rows: a tie keeps it.
    ({"train_data_hash": "t1", "data_hash": "h0", "value_model": "lightgbm"},
     {"train_data_hash": "t1", "metric_value": "0.9"}, False,
     "does not beat version 3 (0.9000, same backtest)"),
    ({"train_data_hash": "t0", "value_model": "lightgbm"}, {"train_data_hash": "t1"}, True,
     "refitted on newer data (2024-01-01), it replaces it"),
])
def test_gate_compares_on_the_same_holdout(champion_tags, new, promoted, reason):
    got = champion_gate(_Registry(**champion_tags), {**NEW, **new}, CONFIG, TABLE)
    assert got[0] is promoted and reason in got[1], got[1]


def test_gate_reads_the_kind_of_a_version_registered_with_the_old_tag_name():
    registry = _Registry(champion="lightgbm", trained_as_of="2023-07-01")
    del registry.tags["value_model"]
    promoted, reason = champion_gate(registry, NEW, CONFIG, TABLE)
    assert promoted and "same kind of model (lightgbm)" in reason, reason


@pytest.mark.parametrize(("others", "promoted", "reason"), [
    ((), True, "version 3 predicts another horizon (365 days); replaced"),
    # An earlier version of the new horizon did better on the same backtest: it stays.
    ((("1", {**NEW, "metric_value": "0.97"}), ("5", {**NEW, "metric_value": "0.99"})), False,
     "version 3 predicts another horizon (365 days), but version 1, of this horizon, scored "
     "normalized_gini 0.9700 on the same backtest, and 0.9500 does not beat it (-0.0200); "
     "@champion stays on version 3"),
    # Worse, on another backtest, or of another horizon: no bar.
    ((("1", {**NEW, "metric_value": "0.93"}),), True, "replaced"),
    ((("1", {**NEW, "metric_value": "0.97", "trained_as_of": "2023-07-01"}),), True, "replaced"),
    ((("1", {**NEW, "metric_value": "0.97", "horizon_days": "90"}),), True, "replaced"),
])
def test_another_horizon_is_replaced_unless_its_own_horizon_did_better(others, promoted, reason):
    # Version 5 is the new model itself, registered before the gate: not its own rival.
    got = champion_gate(_Registry(others, horizon_days="365"), NEW, CONFIG, TABLE, version="5")
    assert got[0] is promoted and reason in got[1], got[1]


def test_a_gain_below_the_bar_is_refused_naming_the_bar():
    strict = CONFIG.model_copy(update={"selection": CONFIG.selection.model_copy(
        update={"min_improvement": 0.1})})
    promoted, reason = champion_gate(_Registry(), NEW, strict, TABLE)
    assert not promoted
    assert reason == ("normalized_gini 0.9500 does not beat version 3 (0.9000, same backtest) "
                      "by at least selection.min_improvement=0.1 (+0.0500); @champion stays "
                      "on version 3")
