"""`keyltv features`: the per-account feature table, without a model or a tracking store."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from keyltv.cli import main
from keyltv.features import FEATURE_COLUMNS


def run_features(monkeypatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["keyltv", "features", *args])
    try:
        main()
    except SystemExit as exited:
        return exited.code
    return 0


@pytest.fixture
def log_files(tmp_path, monkeypatch):
    tx = pd.DataFrame({
        "customer_id": ["00042", "00042", "00042", "7", "7", "00003"],
        "date": ["2024-01-01", "2024-01-11", "2024-02-10", "2024-01-05", "2024-01-20",
                 "2024-03-05"],
        "amount": [80.0, 50.0, 30.0, 40.0, -40.0, 10.0],
    })
    accounts = pd.DataFrame({"customer_id": ["00042", "7", "00003"],
                             "region": ["north", "south", "north"]})
    tx.to_csv(tmp_path / "tx.csv", index=False)
    accounts.to_csv(tmp_path / "accounts.csv", index=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_features_writes_one_row_per_account_seen_before_as_of(log_files, monkeypatch, suffix):
    code = run_features(monkeypatch, "--transactions", "tx.csv", "--accounts", "accounts.csv",
                        "--as-of", "2024-03-01", "--out", f"features{suffix}")
    assert code == 0
    out = log_files / f"features{suffix}"
    table = (pd.read_parquet(out) if suffix == ".parquet"
             else pd.read_csv(out, dtype={"customer_id": str}))
    assert list(table.columns) == ["customer_id", *FEATURE_COLUMNS, "attr_region"]
    assert sorted(table["customer_id"]) == ["00042", "7"]  # 00003 starts after as_of
    row = table.set_index("customer_id").loc["00042"]
    assert (row["frequency"], row["recency"], row["T"]) == (2, 40, 60)
    # No model and no tracking store is touched.
    assert not (log_files / "mlflow.db").exists() and not (log_files / "mlruns").exists()


def test_features_needs_an_explicit_as_of(log_files, monkeypatch, capsys):
    code = run_features(monkeypatch, "--transactions", "tx.csv", "--out", "features.csv")
    assert code != 0
    assert not (log_files / "features.csv").exists()


def test_features_does_not_import_models_or_mlflow():
    import subprocess

    code = ("import sys, keyltv.cli, keyltv.inputs; "
            "from keyltv.config import load_config; load_config(None); "
            "heavy = [m for m in ('mlflow', 'lightgbm', 'lifetimes') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_memory_limit_from_the_config_reaches_duckdb_and_too_little_is_one_line(
        log_files, monkeypatch, capsys):
    (log_files / "capped.yaml").write_text("engine:\n  memory_limit: 300MB\n")
    code = run_features(monkeypatch, "--transactions", "tx.csv", "--as-of", "2024-03-01",
                        "--out", "capped.csv", "--config", "capped.yaml")
    assert code == 0 and (log_files / "capped.csv").exists()
    # Too low a limit: DuckDB runs out of memory, and the message says what to change.
    (log_files / "tiny.yaml").write_text("engine:\n  memory_limit: 1KB\n")
    code = run_features(monkeypatch, "--transactions", "tx.csv", "--as-of", "2024-03-01",
                        "--out", "tiny.csv", "--config", "tiny.yaml")
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and len(errors) == 1, err
    assert "Out of Memory" in errors[0] and "raise engine.memory_limit" in errors[0]
    assert "Traceback" not in err and not (log_files / "tiny.csv").exists()


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_without_accounts_duckdb_writes_the_table_the_models_read(log_files, monkeypatch, suffix):
    from datetime import date

    import numpy as np

    from keyltv.config import Config
    from keyltv.inputs import feature_table, load_inputs

    def no_frame(*_):
        raise AssertionError("the table went through pandas")

    monkeypatch.setattr("keyltv.inputs.write_table", no_frame)
    code = run_features(monkeypatch, "--transactions", "tx.csv", "--as-of", "2024-03-01",
                        "--out", f"direct{suffix}")
    assert code == 0
    out = log_files / f"direct{suffix}"
    written = (pd.read_parquet(out) if suffix == ".parquet"
               else pd.read_csv(out, dtype={"customer_id": str}))
    expected = feature_table(load_inputs("tx.csv", None, Config(), date(2024, 3, 1)), Config())
    assert list(written.columns) == list(expected.columns) == ["customer_id", *FEATURE_COLUMNS]
    assert written["customer_id"].tolist() == expected["customer_id"].tolist() == ["00042", "7"]
    np.testing.assert_allclose(written[FEATURE_COLUMNS].to_numpy(float),
                               expected[FEATURE_COLUMNS].to_numpy(float), rtol=1e-12)
    assert sorted(p.name for p in log_files.iterdir()) == sorted(
        ["tx.csv", "accounts.csv", f"direct{suffix}"])  # no temporary file left behind


def test_features_without_accounts_runs_without_importing_pandas(log_files):
    # pandas' import was half a second of this command's start (see keyltv.features).
    script = ("import sys\nfrom keyltv.cli import main\n"
              "sys.argv = ['keyltv', 'features', '--transactions', 'tx.csv', '--as-of', "
              "'2024-03-01', '--out', 'features.parquet']\n"
              "try:\n    main()\nexcept SystemExit as exited:\n    assert not exited.code\n"
              "assert 'pandas' not in sys.modules, 'pandas was imported'\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=log_files, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert pd.read_parquet(log_files / "features.parquet")["customer_id"].tolist() == ["00042",
                                                                                        "7"]


def test_a_log_of_quantities_and_unit_prices_gives_the_features_of_its_amounts(
        log_files, monkeypatch):
    # The same log as a wholesale export: each amount as 2 x half of it (exact in binary).
    tx = pd.read_csv("tx.csv", dtype={"customer_id": str})
    tx.assign(Qty=2, Price=tx["amount"] / 2).drop(columns="amount").to_csv("wholesale.csv",
                                                                          index=False)
    assert_same_features(log_files, monkeypatch, "wholesale.csv",
                         "columns:\n  quantity: Qty\n  unit_price: Price\n")


def assert_same_features(folder, monkeypatch, twin: str, config: str) -> None:
    """``keyltv features`` on ``twin`` with ``config`` writes the table of tx.csv."""
    (folder / "c.yaml").write_text(config)
    for source, extra in (("tx.csv", []), (twin, ["--config", "c.yaml"])):
        code = run_features(monkeypatch, "--transactions", source, "--as-of", "2024-03-01",
                            "--out", f"{source}.parquet", *extra)
        assert code == 0
    pd.testing.assert_frame_equal(pd.read_parquet(f"{twin}.parquet"),
                                  pd.read_parquet("tx.csv.parquet"))


def test_a_log_with_decimal_commas_gives_the_features_of_its_plain_twin(log_files, monkeypatch):
    tx = pd.read_csv("tx.csv", dtype={"customer_id": str})
    # As an older German ERP writes it: semicolons, decimal commas, Latin-1 text.
    german = tx.assign(amount=tx["amount"].map(lambda v: f"{v:.2f}".replace(".", ",")),
                       name="Müller GmbH")
    german.to_csv("german.csv", index=False, sep=";", encoding="latin-1")
    assert_same_features(log_files, monkeypatch, "german.csv",
                         "decimal_separator: ','\nthousands_separator: '.'\n"
                         "encoding: latin-1\n")


def test_a_closed_stdout_does_not_fail_the_job(log_files):
    # `keyltv features ... | true`: the reader is gone before the first line, so every
    # write to stdout fails with EPIPE. It exited 1 with no message (audit 22).
    import os

    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([sys.executable, "-m", "keyltv.cli", "features", "--transactions",
                               "tx.csv", "--as-of", "2024-03-01", "--out", "features.csv"],
                              cwd=log_files, stdout=write, stderr=subprocess.PIPE, text=True,
                              timeout=120)
    finally:
        os.close(write)
    assert done.returncode == 0, done.stderr
    assert "stdout was closed by its reader" in done.stderr
    assert "error" not in done.stderr and "Traceback" not in done.stderr
    assert pd.read_csv(log_files / "features.csv")["customer_id"].tolist() == [42, 7]


def test_features_write_a_date_attribute_as_days_and_leave_out_an_id(log_files, monkeypatch,
                                                                     capsys, caplog):
    # 25 rows (22 without transactions): enough for a VAT number per row to be an id.
    ids = ["00042", "7", "00003", *(f"x{i}" for i in range(22))]
    pd.DataFrame({"customer_id": ids, "vat": [f"DE{i:09d}" for i in range(25)],
                  "customer_since": ["2023-12-02", "2024-03-11", *["2020-01-01"] * 23],
                  "region": (["north", "south"] * 13)[:25]}).to_csv("accounts.csv", index=False)
    code = run_features(monkeypatch, "--transactions", "tx.csv", "--accounts", "accounts.csv",
                        "--as-of", "2024-03-01", "--out", "features.csv")
    assert code == 0
    table = pd.read_csv(log_files / "features.csv", dtype={"customer_id": str})
    assert list(table.columns)[-2:] == ["attr_customer_since_days_before", "attr_region"]
    assert table.set_index("customer_id")["attr_customer_since_days_before"].to_dict() == {
        "00042": 90.0, "7": -10.0}
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warned == ["accounts.csv: column 'vat': 25 distinct values in 25 non-blank rows, an "
                      "id rather than a category: not used as a model input (name it in "
                      "account_text_columns to use it as categories)"]
    out = capsys.readouterr().out
    assert "attribute_columns_read_as_dates=1" in out
    assert "attribute_columns_ignored_as_ids=1" in out


@pytest.mark.parametrize("with_accounts", [False, True], ids=["duckdb-writes", "with-accounts"])
def test_a_gzipped_log_gives_the_features_of_its_plain_twin_byte_for_byte(
        log_files, monkeypatch, with_accounts):
    import gzip

    for name in ("tx.csv", "accounts.csv"):
        (log_files / f"{name}.gz").write_bytes(gzip.compress((log_files / name).read_bytes()))
    for suffix in ("", ".gz"):
        accounts = ["--accounts", f"accounts.csv{suffix}"] if with_accounts else []
        code = run_features(monkeypatch, "--transactions", f"tx.csv{suffix}", *accounts,
                            "--as-of", "2024-03-01", "--out", f"features{suffix or '.plain'}.csv")
        assert code == 0
    assert (log_files / "features.gz.csv").read_bytes() == \
        (log_files / "features.plain.csv").read_bytes()
