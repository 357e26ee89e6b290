"""Train twice against one store: the champion gate, the registry and the run record."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from keyltv import workflows
from keyltv.data.simulate import simulate_b2b
from keyltv.tracking.pyfunc import bundle_outputs, load_bundle
from tests.workflows.conftest import CONFIG


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    tx, accounts = simulate_b2b(250, seed=8)
    store = workflows.open_store(CONFIG, Path(root))
    inputs = workflows.load_inputs(tx, None, CONFIG, None, label="sim")
    first = workflows.train(inputs, CONFIG, store)
    strict = CONFIG.with_overrides(selection={"metric": "normalized_gini", "min_improvement": 0.5})
    second = workflows.train(inputs, strict, store)
    yield store, first, second
    mp.undo()


def test_first_model_becomes_champion(trained):
    store, first, _ = trained
    assert first.promoted and first.reason == "no earlier version held @champion"
    assert str(store.champion_version().version) == first.version == "1"


def test_gate_keeps_the_champion_and_says_why(trained):
    store, _, second = trained
    assert not second.promoted
    assert "does not beat version 1 (" in second.reason and "same backtest" in second.reason
    assert str(store.champion_version().version) == "1"
    version = store.client.get_model_version(store.model_name, second.version)
    assert version.tags["not_promoted"] == second.reason


def test_training_run_carries_the_review_record(trained):
    store, first, _ = trained
    run = mlflow.get_run(first.run_id)
    assert run.data.params["champion"] == first.champion
    assert "seed" in run.data.params and "data_hash" in run.data.params
    assert run.data.params["keyltv_version"] and len(run.data.params["train_data_hash"]) >= 16
    # What the deployed refit learned from, and apart from it the selection backtest's
    # (the params showed the backtest's as the refit's; audit 29).
    from keyltv.models.training import training_data

    refit = training_data(workflows.load_inputs(simulate_b2b(250, seed=8)[0], None, CONFIG, None,
                                                label="sim").log, first.backtest.data.as_of
                          + pd.Timedelta(days=first.backtest.horizon_days).to_pytimedelta(),
                          CONFIG, None)
    assert run.data.params["training_cutoffs"] == ",".join(map(str, refit.cutoffs))
    assert run.data.params["backtest_training_cutoffs"] == ",".join(
        map(str, first.backtest.data.cutoffs))
    assert "Top drivers (gain of " in run.data.tags["mlflow.note.content"]
    assert "trailing_normalized_gini" in run.data.metrics
    assert run.data.tags["mlflow.note.content"].startswith(f"**Champion: {first.champion}**")
    # The registry's decision is on the run page and on the version page.
    assert run.data.tags["mlflow.note.content"].endswith(
        "**Registry:** version 1, now @champion: no earlier version held @champion")
    assert run.data.params["promoted"] == "True"
    version = store.client.get_model_version(store.model_name, first.version)
    assert version.description == "**Registry:** version 1, now @champion: no earlier version held @champion"
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(first.run_id)}
    assert {"backtest.html", "config.yaml", "data_fingerprint.json", "plots"} <= artifacts
    page = Path(mlflow.MlflowClient().download_artifacts(first.run_id, "backtest.html"))
    assert page.read_text().startswith(f"<p>Every model fitted on data before "
                                       f"{first.backtest.cutoff}, judged on the ")
    plots = {a.path for a in mlflow.MlflowClient().list_artifacts(first.run_id, "plots")}
    assert "plots/gains.png" in plots and "plots/decile_chart.png" in plots
    children = mlflow.search_runs([run.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{first.run_id}'")
    assert set(children["tags.mlflow.runName"]) == set(first.backtest.table.index)
    # A reviewer sees the trees early stopping kept, not only the cap.
    gbm = children[children["tags.mlflow.runName"] == "lightgbm"]
    assert int(gbm["params.n_trees"].iloc[0]) == first.backtest.models["lightgbm"].n_trees_
    # ... and whether the trees started from each account's run rate (4 years of log: yes).
    assert gbm["params.run_rate_offset"].iloc[0] == "True"
    assert 0.75 <= run.data.metrics["interval_holdout_coverage"] <= 1.0


# Runs with -I -S (no PYTHONPATH, no site module): the dependencies are on sys.path,
# keyltv is not (its editable install is a .pth file, which only the site module reads).
_FRESH_ENVIRONMENT = """
import json, sys
sys.path.append({purelib!r})
try:
    import keyltv
    raise SystemExit("keyltv is importable before the model is loaded")
except ModuleNotFoundError:
    pass
import mlflow
from mlflow.models import Model
mlflow.set_tracking_uri({uri!r})
local = mlflow.artifacts.download_artifacts("models:/keyltv/1")
example = Model.load(local).load_input_example(local)
out = mlflow.pyfunc.load_model(local).predict(example)
import keyltv
print(json.dumps({{"keyltv": keyltv.__file__, "example": example.to_json(orient="split"),
                  "out": out.to_json(orient="split")}}))
"""


def test_the_registered_model_loads_where_keyltv_is_not_installed(trained, tmp_path):
    # keyltv is on no package index: the model carries its source, or `mlflow models
    # serve` and load_model fail anywhere but this checkout.
    uri = mlflow.get_tracking_uri()
    script = _FRESH_ENVIRONMENT.format(purelib=sysconfig.get_paths()["purelib"], uri=uri)
    done = subprocess.run([sys.executable, "-I", "-S", "-c", script], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert "/code/keyltv/" in got["keyltv"]  # the model's own copy
    example = pd.read_json(__import__("io").StringIO(got["example"]), orient="split",
                           dtype={"customer_id": str})
    bundle, _ = load_bundle("models:/keyltv/1")
    expected = bundle_outputs(bundle, example)
    out = pd.read_json(__import__("io").StringIO(got["out"]), orient="split",
                       dtype={"customer_id": str})
    pd.testing.assert_frame_equal(out[expected.columns], expected, check_dtype=False)


def test_loading_a_model_leaves_sys_path_as_it_was(trained):
    before = list(sys.path)
    load_bundle("models:/keyltv/1")
    assert sys.path == before


def test_the_model_records_the_precision_targets_of_its_learned_thresholds(trained):
    # So that scoring with other targets does not use them (audit 29).
    bundle, _ = load_bundle("models:/keyltv/1")
    assert bundle.flag_targets == {"at_risk_decline": 0.6, "high_potential_growth": 0.5}


def test_an_earlier_champion_is_marked_superseded_on_its_pages(trained):
    store, _, second = trained  # (runs last: it edits the second version's pages)
    version = store.client.get_model_version(store.model_name, second.version)
    store.mark_superseded(version, "7")
    after = store.client.get_model_version(store.model_name, second.version)
    assert after.description.endswith("**Superseded:** version 7 took @champion.")
    assert after.tags["superseded_by"] == "7"
    note = mlflow.get_run(second.run_id).data.tags["mlflow.note.content"]
    assert note.endswith("**Superseded:** version 7 took @champion.")
