"""The CLI end to end in fresh processes, on a small simulated log and a temporary store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from keyltv.cli import main
from keyltv.data.simulate import simulate_b2b
from keyltv.scoring.score import SCORE_COLUMNS


def run_cli(*args: str, cwd: Path, uri: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    return subprocess.run([sys.executable, "-m", "keyltv.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A trained store: 300 accounts over 4 years, ids that look numeric (leading zeros)."""
    root = tmp_path_factory.mktemp("cli")
    tx, accounts = simulate_b2b(300, seed=11)
    for frame in (tx, accounts):
        frame["customer_id"] = frame["customer_id"].str.replace("A", "0")
    tx.to_csv(root / "tx.csv", index=False)
    accounts.to_csv(root / "accounts.csv", index=False)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    trained = run_cli("train", "--transactions", "tx.csv", "--accounts", "accounts.csv",
                      "--horizon-days", "182", cwd=root, uri=uri)
    return root, uri, tx, trained


def test_train_prints_the_backtest_and_registers_a_champion(workspace):
    _, _, _, trained = workspace
    assert trained.returncode == 0, trained.stderr[-2000:]
    out = trained.stdout
    for model in ("trailing", "bgnbd", "lightgbm", "hybrid"):
        assert f"\n{model} " in out
    assert "normalized_gini" in out and "Run id: " in out
    assert "now @champion" in out


def test_score_writes_every_column_for_every_account(workspace):
    root, uri, tx, _ = workspace
    done = run_cli("score", "--transactions", "tx.csv", "--accounts", "accounts.csv",
                   "--out", "scores.parquet", "--as-of", "2024-07-01", cwd=root, uri=uri)
    assert done.returncode == 0, done.stderr[-2000:]
    scores = pd.read_parquet(root / "scores.parquet")
    expected = {c for c in SCORE_COLUMNS if c not in ("previous_tier", "tier_change")}
    assert expected <= set(scores.columns)
    seen = tx.loc[tx["date"] < "2024-07-01", "customer_id"].unique()
    assert sorted(scores["customer_id"]) == sorted(seen)
    assert scores["customer_id"].str.startswith("0").all()  # leading zeros survive
    assert scores["p_alive"].between(0, 1).all() and (scores["predicted_value"] >= 0).all()
    assert (scores["predicted_value_low"] <= scores["predicted_value"]).all()
    assert (scores["predicted_value"] <= scores["predicted_value_high"]).all()
    assert set(scores["tier"]) == {"A", "B", "C", "D"}
    assert scores["model_version"].iloc[0] == "keyltv/1"
    # The training run behind keyltv/1 (a registry number repeats across project folders).
    assert scores["model_run_id"].nunique() == 1 and len(scores["model_run_id"].iloc[0]) == 32
    assert scores["tier_rule"].iloc[0] == "share_of_accounts 0.2/0.3/0.3"
    assert scores["horizon_days"].iloc[0] == 182


def test_score_with_previous_gives_migrations(workspace):
    root, uri, _, _ = workspace

    def score_against(previous: str, out: str) -> subprocess.CompletedProcess:
        result = run_cli("score", "--transactions", "tx.csv", "--accounts", "accounts.csv",
                         "--out", out, "--as-of", "2024-07-01", "--previous", previous,
                         cwd=root, uri=uri)
        assert result.returncode == 0, result.stderr[-2000:]
        return result

    first = run_cli("score", "--transactions", "tx.csv", "--accounts", "accounts.csv",
                    "--out", "q1.csv", "--as-of", "2024-04-01", cwd=root, uri=uri)
    assert first.returncode == 0, first.stderr[-2000:]
    second = score_against("q1.csv", "q2.csv")
    scores = pd.read_csv(root / "q2.csv", dtype={"customer_id": str})
    assert set(scores["tier_change"]) <= {"up", "down", "same", "new"}
    assert (scores["tier_change"] != "new").sum() > 0
    assert "note: --previous" not in second.stdout  # same model, same horizon
    assert "tier_moves_held_near_cuts=" in second.stdout  # the band held some
    # An earlier file of another model version and horizon: the migrations are said to mix.
    earlier = pd.read_csv(root / "q1.csv", dtype={"customer_id": str})
    assert earlier["predicted_profit"].notna().all()  # the simulator's log has margins
    # ... and ranked by value (a run on a log without margins).
    earlier.assign(model_version="keyltv/0", horizon_days=365).drop(
        columns="predicted_profit").to_csv(root / "q0.csv", index=False)
    third = score_against("q0.csv", "q3.csv")
    assert ("note: --previous was scored by keyltv/0, this run by keyltv/1: tier changes mix "
            "account and model changes") in third.stdout
    assert ("note: --previous predicted a 365-day horizon, this run a 182-day one: its tiers "
            "rank another quantity") in third.stdout
    assert ("note: --previous ranked its tiers by predicted value, this run by predicted "
            "profit: tier changes compare two rankings") in third.stdout
    # The same model and a file tiered by another rule (audit 29: 412 moves made by the
    # config alone), or scored by another project's keyltv/1.
    earlier.assign(tier_rule="cumulative_value 0.8/0.95/0.99").to_csv(root / "q4.csv", index=False)
    fourth = score_against("q4.csv", "q5.csv")
    assert ("note: --previous tiered by cumulative_value 0.8/0.95/0.99, this run by "
            "share_of_accounts 0.2/0.3/0.3: tier changes compare two rules") in fourth.stdout
    assert "tier_moves_held_near_cuts" not in fourth.stdout  # no band: 0, not printed
    run_id = earlier["model_run_id"].iloc[0]
    earlier.assign(model_run_id="0" * 31 + "f").to_csv(root / "q6.csv", index=False)
    fifth = score_against("q6.csv", "q7.csv")
    assert (f"note: --previous was scored by keyltv/1 of training run {'0' * 31}f, this run by "
            f"keyltv/1 of training run {run_id}") in fifth.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "models:/nope@champion"], "model 'models:/nope@champion': cannot be loaded"),
        (["--accounts", "missing.csv"], "missing.csv: file not found"),
        (["--as-of", "2019-01-01"], "is on or before the first transaction"),
        (["--horizon-days", "0"], "--horizon-days 0: must be a positive number"),
        (["--horizon-days", "30"], "trained for a 182-day horizon"),
    ],
    ids=["unknown-model", "missing-accounts", "as-of-before-data", "horizon-zero", "other-horizon"],
)
def test_bad_input_exits_2_with_one_line_and_no_output(workspace, args, message, monkeypatch,
                                                       capsys):
    # In-process (same code path as the console script) to keep the suite fast.
    root, uri, _, _ = workspace
    out = root / "bad.csv"
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setattr(sys, "argv", ["keyltv", "score", "--transactions", "tx.csv",
                                      "--accounts", "accounts.csv", "--out", str(out), *args])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    stderr = capsys.readouterr().err
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], stderr
    assert "Traceback" not in stderr
    assert not out.exists()


@pytest.mark.parametrize(("args", "message"), [
    (["score", "--out", "s.csv"], "mlflow.db': does not exist, so no model is registered there"),
    (["train"], "train needs at least 10"),
], ids=["score-without-a-store", "train-refused"])
def test_a_refused_job_leaves_no_tracking_store_behind(tmp_path, monkeypatch, capsys, args,
                                                       message):
    # A refused job writes nothing: not even the empty database MLflow would create.
    pd.DataFrame({"customer_id": ["a"], "date": ["2024-01-01"], "amount": [1.0]}).to_csv(
        tmp_path / "tx.csv", index=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(sys, "argv", ["keyltv", args[0], "--transactions", "tx.csv", *args[1:],
                                      "--project-dir", str(tmp_path)])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tx.csv"]


def test_a_store_that_cannot_record_the_run_stops_score_before_any_file(
        workspace, tmp_path, monkeypatch, capsys, caplog):
    import sqlite3

    import mlflow

    root, uri, _, _ = workspace
    out = tmp_path / "scores.csv"
    out.write_text("OLD\n")

    def locked(*args, **kwargs):
        try:
            raise sqlite3.OperationalError("database is locked")
        except sqlite3.OperationalError as exc:
            raise RuntimeError("SQLAlchemy database error. The following exception is caught.") \
                from exc

    monkeypatch.setattr(mlflow, "start_run", locked)
    caplog.set_level("INFO", logger="keyltv")
    monkeypatch.chdir(root)
    # An explicit --project-dir wins over a machine-wide MLFLOW_TRACKING_URI.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    monkeypatch.setattr(sys, "argv", ["keyltv", "score", "--transactions", "tx.csv",
                                      "--accounts", "accounts.csv", "--out", str(out),
                                      "--project-dir", str(root)])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 1
    stderr = capsys.readouterr().err
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert errors == [f"error: MLflow tracking store 'sqlite:///{root / 'mlflow.db'}': cannot "
                      "record a run (database is locked)"], stderr
    assert "Traceback" not in stderr
    assert f"MLflow store sqlite:///{root / 'mlflow.db'}" in caplog.text
    assert out.read_text() == "OLD\n" and not (tmp_path / "elsewhere.db").exists()


def test_train_prints_every_flag_threshold_and_where_it_came_from():
    from keyltv.config import Config
    from keyltv.workflows import flag_threshold_summary

    config = Config(flags={"at_risk_precision": None})
    assert flag_threshold_summary({"high_potential_growth": 0.2599561}, config) == (
        "at_risk_decline=0.5 (the config's; no precision target); "
        "high_potential_growth: set at scoring for an expected precision of 0.5, else "
        "0.2599561 (learned: precision 0.5 among valuable accounts in the backtest)")
    assert flag_threshold_summary({}, Config()).startswith(
        "at_risk_decline: set at scoring for an expected precision of 0.6, else 0.5 (the "
        "config's: no decline_risk threshold reached precision 0.6 in the backtest)")


def test_after_a_closed_stdout_the_lines_go_to_devnull_and_the_job_goes_on(monkeypatch):
    # evaluate and demo print before they write: a broken pipe must not stop them.
    from keyltv import cli

    read, write = os.pipe()
    os.close(read)
    stream = os.fdopen(write, "w")
    try:
        with monkeypatch.context() as patched:
            patched.setattr(sys, "stdout", stream)
            cli._echo("Origin 2024-01-01: ...")  # EPIPE: stdout now writes to os.devnull
            cli._echo("Metrics -> ev.json")
            stream.flush()
        assert os.path.samestat(os.fstat(write), os.stat(os.devnull))
    finally:
        stream.close()


def test_a_bare_keyltv_is_a_usage_error_and_help_is_not(tmp_path):
    # A scheduler that lost the argument list must see a failure, with the help in its
    # stderr log; asking for the help is a success, on stdout.
    def keyltv(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "keyltv.cli", *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)

    bare, asked = keyltv(), keyltv("--help")
    assert bare.returncode == 2 and bare.stdout == ""
    assert "Usage:" in bare.stderr and "features" in bare.stderr
    assert bare.stderr.splitlines()[-1] == ("error: no command given; expected one of train, "
                                            "score, evaluate, features, demo")
    assert "Traceback" not in bare.stderr
    assert asked.returncode == 0 and "Usage:" in asked.stdout and asked.stderr == ""
    assert list(tmp_path.iterdir()) == []  # no store or output


def test_an_interrupted_job_exits_130_with_one_line(tmp_path, monkeypatch, capsys):
    # Ctrl-C (SIGINT) during the work: typer returns 130 rather than raising it, and the
    # job exited 0 with nothing said, a success to its scheduler (audit 28).
    import keyltv.inputs

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(keyltv.inputs, "load_inputs", interrupted)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["keyltv", "features", "--transactions", "tx.csv",
                                      "--as-of", "2024-01-01", "--out", "f.csv"])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: interrupted"
    assert not (tmp_path / "f.csv").exists()


def test_on_a_terminal_a_live_line_shows_the_step_and_the_log_lines_stay():
    # A batch log gets the plain lines (every other test here); a terminal also gets a
    # live line with the current step, removed when the job ends (audit 28: none before).
    import io
    import logging

    from rich.console import Console

    from keyltv.cli import progress_display

    keyltv_log = logging.getLogger("keyltv")
    level = keyltv_log.level
    # setLevel, not the attribute: it also clears the loggers' cache of enabled levels.
    keyltv_log.setLevel(logging.INFO)
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100)
    try:
        with progress_display(console) as bar:
            keyltv_log.info("selection backtest before 2024-04-01 on 487 accounts")
            (task,) = bar.tasks
            assert task.description == "selection backtest before 2024-04-01 on 487 accounts"
    finally:
        keyltv_log.setLevel(level)
    text = screen.getvalue()
    assert "INFO selection backtest before 2024-04-01 on 487 accounts" in text  # it stays
    # Only the live handler was added, and it is gone.
    assert not any(type(h).__name__ == "Live" for h in logging.getLogger().handlers)


def test_evaluate_prints_each_origin_and_the_models_it_skipped(workspace):
    # The skipped models were only in the JSON; train printed them (audit 29).
    root, uri, _, _ = workspace
    (root / "eval.yaml").write_text("models: [trailing, bgnbd, lightgbm]\nselection:\n  blend: false\n"
                                    "backtest:\n  n_origins: 1\ntraining:\n  min_feature_days: 1200\n")
    result = run_cli("evaluate", "--transactions", "tx.csv", "--config", "eval.yaml",
                     "--cutoff", "2024-01-01", "--horizon-days", "182", "--out", "m.json",
                     cwd=root, uri=uri)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Origin 2024-01-01: keyltv champion = bgnbd" in result.stdout
    assert "skipped lightgbm: " in result.stdout
    assert "(training.min_feature_days)" in result.stdout
    assert "Metrics -> m.json" in result.stdout and (root / "m.json").exists()
