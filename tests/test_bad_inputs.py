"""The catalogue of bad inputs (docs/bad-inputs.md), each run through the real CLI entry.

Every case runs ``keyltv.cli.main`` in-process (the console script's code path) against
one trained store, and ends in one of two documented ways:

- **rejected**: exit code 2, exactly one ``error:`` line naming the file, the column
  and the value, no traceback, no output file and no temporary file left behind;
- **handled**: exit code 0, the handling counted on the ``Counted:`` line, and the
  score file still holding one row per account seen before ``--as-of``.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from keyltv.cli import main
from keyltv.data.columns import STRIPPED_CODES
from keyltv.data.simulate import simulate_b2b

HORIZON = "182"
FAST_CONFIG = "models: [trailing, bgnbd]\ntraining:\n  n_cutoffs: 1\n"
CANARY = "canary-s3cr3t-7f4e"  # planted in credential variables; must never be written


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def errors(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.startswith("error:")]


def run_cli(*args: str) -> Result:
    """Run the CLI in this process, as the console script does; capture its output."""
    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["keyltv", *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
                code = 0
            except SystemExit as exc:
                code = exc.code
    finally:
        sys.argv = argv
    return Result(code, out.getvalue(), err.getvalue())


@dataclass(frozen=True)
class Workspace:
    root: Path
    uri: str
    tx: pd.DataFrame  # the clean log as text columns, ids with leading zeros
    accounts: pd.DataFrame
    trained: Result
    model_dir: Path  # the registered model's files, as a local folder

    @property
    def accounts_csv(self) -> str:
        return str(self.root / "accounts.csv")

    def seen_before(self, as_of: str) -> set[str]:
        return set(self.tx.loc[self.tx["date"] < as_of, "customer_id"])


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    """One store trained on 200 simulated accounts (4 years) with attributes.

    Besides the simulator's attributes, the table has a VAT number per account (an id,
    which no model reads) and a ``customer_since`` date (read as days before as_of).
    """
    root = tmp_path_factory.mktemp("bad_inputs")
    tx, accounts = simulate_b2b(200, seed=7)
    tx["customer_id"] = tx["customer_id"].str.replace("A", "0")
    accounts["customer_id"] = accounts["customer_id"].str.replace("A", "0")
    accounts["vat_id"] = [f"DE{100_000_000 + 7 * i}" for i in range(len(accounts))]
    accounts["customer_since"] = (pd.Timestamp("2018-01-01") + pd.to_timedelta(
        [7 * i for i in range(len(accounts))], unit="D")).strftime("%Y-%m-%d")
    tx = tx.assign(date=tx["date"].dt.strftime("%Y-%m-%d")).astype(str)
    tx.to_csv(root / "tx.csv", index=False)
    accounts.to_csv(root / "accounts.csv", index=False)
    (root / "fast.yaml").write_text(FAST_CONFIG)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        for name in ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "AWS_SECRET_ACCESS_KEY"):
            mp.setenv(name, CANARY)
        trained = run_cli("train", "--transactions", "tx.csv", "--accounts", "accounts.csv",
                          "--config", "fast.yaml", "--horizon-days", HORIZON)
        scored = run_cli("score", "--transactions", "tx.csv", "--accounts", "accounts.csv",
                         "--config", "fast.yaml", "--out", "scores.csv")
    assert trained.code == 0, trained.err[-3000:]
    assert scored.code == 0, scored.err[-3000:]
    model_dir = next(root.rglob("MLmodel")).parent
    return Workspace(root, uri, tx, accounts, trained, model_dir)


@pytest.fixture
def in_case(workspace, tmp_path, monkeypatch) -> Path:
    """A fresh folder per case, with the workspace's store."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", workspace.uri)
    return tmp_path


# --- building bad files -------------------------------------------------------------


def log_csv(ws: Workspace, edit: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
            name: str = "tx.csv", **to_csv) -> str:
    frame = ws.tx.copy()
    if edit is not None:
        frame = edit(frame)
    frame.to_csv(name, index=False, **to_csv)
    return name


def negated(frame: pd.DataFrame) -> pd.DataFrame:
    """Every amount negative: an accounting export that signs sales negative."""
    return frame.assign(amount=(-pd.to_numeric(frame["amount"]).abs()).astype(str))


def set_cell(column: str, value: str, row: int = 5) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def edit(frame: pd.DataFrame) -> pd.DataFrame:
        frame.iloc[row, frame.columns.get_loc(column)] = value
        return frame
    return edit


def write(name: str, data: str | bytes) -> str:
    Path(name).write_bytes(data.encode() if isinstance(data, str) else data)
    return name


def with_config(text: str) -> Callable[[Workspace], list[str]]:
    """A case that scores the clean log with ``text`` as its config file ``c.yaml``."""
    return lambda ws: score(ws, log_csv(ws), "--config", write("c.yaml", text))


def score(ws: Workspace, tx: str = "tx.csv", *extra: str, accounts: str | None = "") -> list[str]:
    """``score`` arguments; ``accounts=None`` leaves out --accounts."""
    args = ["score", "--transactions", tx, "--out", "scores.csv", *extra]
    if accounts is not None:
        args += ["--accounts", accounts or ws.accounts_csv]
    return args


def parts(ws: Workspace, edit_second: Callable[[pd.DataFrame], pd.DataFrame]) -> str:
    """The log split in two files of one folder; ``edit_second`` changes the second."""
    Path("parts").mkdir()
    half = len(ws.tx) // 2
    ws.tx.iloc[:half].to_csv("parts/tx-1.csv", index=False)
    edit_second(ws.tx.iloc[half:].copy()).to_csv("parts/tx-2.csv", index=False)
    return "parts"


PRICED_CONFIG = FAST_CONFIG + "columns:\n  quantity: Qty\n  unit_price: Price\n"


def priced_log(frame: pd.DataFrame, qty: str = "2 pcs") -> pd.DataFrame:
    """The log as a wholesale export: quantity and unit price, no line amount."""
    frame = frame.assign(Qty="1", Price=frame["amount"]).drop(columns="amount")
    frame.iloc[5, frame.columns.get_loc("Qty")] = qty
    return frame


def tz_parquet(ws: Workspace) -> list[str]:
    frame = ws.tx.assign(date=pd.to_datetime(ws.tx["date"]).dt.tz_localize("Europe/Berlin"))
    frame.to_parquet("tx.parquet")
    return score(ws, "tx.parquet")


def float_ids_parquet(ws: Workspace) -> list[str]:
    # Ids exported as floats; one beyond 2**53, where floats skip whole numbers.
    ids = ws.tx["customer_id"].astype(float)
    ids.iloc[3] = 123456789012345678.0
    ws.tx.assign(customer_id=ids).to_parquet("tx.parquet")
    return score(ws, "tx.parquet")


def not_utf8(ws: Workspace) -> list[str]:
    # A name typed on a Windows-1252 machine, in the last line of a long file.
    body = ws.tx.to_csv(index=False).encode() + b"M\xfcller GmbH,2024-06-03,12.5,1.0\n"
    write("tx.csv", body)
    return score(ws)


def parquet_parts(ws: Workspace) -> list[str]:
    """The log in two Parquet files whose amounts are stored as text and as numbers."""
    Path("pq").mkdir()
    half = len(ws.tx) // 2
    ws.tx.iloc[:half].to_parquet("pq/p-1.parquet")
    ws.tx.iloc[half:].astype({"amount": float}).to_parquet("pq/p-2.parquet")
    return score(ws, "pq")


def previous_scores(ids: list[str], as_of: str | None = None, value: str | None = None) -> str:
    """An earlier score file (only the columns ``--previous`` reads) for ``ids``."""
    tiers = [("A", "B", "C", "D")[i % 4] for i in range(len(ids))]
    frame = pd.DataFrame({"customer_id": ids, "tier": tiers})
    if as_of is not None:
        frame["as_of"] = as_of
    if value is not None:
        frame["predicted_value"] = value
    frame.to_csv("prev.csv", index=False)
    return "prev.csv"


def accounts_csv(ws: Workspace, edit: Callable[[pd.DataFrame], pd.DataFrame]) -> str:
    edit(ws.accounts.copy()).to_csv("acc.csv", index=False)
    return "acc.csv"


def gzipped(name: str, damage: Callable[[bytes], bytes] = bytes) -> str:
    """The file ``name`` gzipped as ``name.gz`` (the plain one removed), then ``damage``d."""
    packed = gzip.compress(Path(name).read_bytes())
    Path(name).unlink()
    return write(f"{name}.gz", damage(packed))


def bad_checksum(packed: bytes) -> bytes:
    """The CRC-32 in the gzip trailer flipped: the data decompresses, DuckDB reads it."""
    return packed[:-8] + bytes([packed[-8] ^ 0xFF]) + packed[-7:]


def model_copy(ws: Workspace, damage: bool = False) -> str:
    shutil.copytree(ws.model_dir, "model")
    if damage:
        next(Path("model").rglob("bundle.pkl")).write_bytes(b"not a pickle")
    return "model"


def unwritable_folder() -> str:
    if os.geteuid() != 0:
        Path("locked").mkdir()
        Path("locked").chmod(0o555)
        return "locked"
    return "/sys"  # root may write anywhere it has a mode for; sysfs refuses new files


@dataclass(frozen=True)
class Case:
    id: str
    prepare: Callable[[Workspace], list[str]]  # writes files into the case folder
    message: str  # rejected: part of the error line; handled: part of the "Counted:" line
    code: int = 2


REJECTED = [
    # -- the transaction log: columns and values
    Case("missing-column", lambda ws: score(ws, log_csv(ws, lambda f: f.drop(columns="amount"))),
         "tx.csv: column 'amount' is missing; found columns: 'customer_id', 'date', 'margin'"),
    Case("renamed-column",
         lambda ws: score(ws, log_csv(ws, lambda f: f.rename(columns={"customer_id": "Kunde Nr"}))),
         "tx.csv: column 'customer_id' is missing; found columns: 'Kunde Nr'"),
    Case("renamed-column-near-miss", lambda ws: score(ws, log_csv(
        ws, lambda f: f.rename(columns={"customer_id": "Customer ID"}))),
         "tx.csv: column 'customer_id' is missing (did you mean 'Customer ID'?)"),
    Case("duplicated-column", lambda ws: score(ws, write(
        "tx.csv", "customer_id,date,amount,amount\n1,2024-01-01,5,6\n")),
         "tx.csv: column 'amount' appears more than once in the header"),
    Case("amount-not-a-number", lambda ws: score(ws, log_csv(ws, set_cell("amount", "1.234,50")))
         , "tx.csv: column 'amount': not a number '1.234,50' in 1 row(s); expected a plain number"),
    Case("amount-digit-separator", lambda ws: score(ws, log_csv(ws, set_cell("amount", "1_000"))),
         "tx.csv: column 'amount': not a number '1_000' in 1 row(s)"),
    Case("amount-currency-sign", lambda ws: score(ws, log_csv(ws, set_cell("amount", "€12.00"))),
         "tx.csv: column 'amount': not a number '€12.00' in 1 row(s)"),
    Case("amount-blank", lambda ws: score(ws, log_csv(ws, set_cell("amount", "")))
         , "tx.csv: column 'amount': blank amount '' in 1 row(s)"),
    Case("amount-not-finite", lambda ws: score(ws, log_csv(ws, set_cell("amount", "NaN"))),
         "tx.csv: column 'amount': not a finite number 'NaN' in 1 row(s)"),
    Case("amount-absurd", lambda ws: score(ws, log_csv(ws, set_cell("amount", "3e300"))),
         "tx.csv: column 'amount': implausible amount '3e300' in 1 row(s); expected magnitudes "
         "below 1e+15"),
    Case("margin-not-a-number", lambda ws: score(ws, log_csv(ws, set_cell("margin", "n/a"))),
         "tx.csv: column 'margin': not a number 'n/a' in 1 row(s)"),
    Case("quantity-not-a-number", lambda ws: score(ws, log_csv(ws, priced_log), "--config",
                                                  write("c.yaml", PRICED_CONFIG)),
         "tx.csv: column 'Qty': not a number '2 pcs' in 1 row(s); expected a plain number"),
    Case("unit-price-blank", lambda ws: score(ws, log_csv(
        ws, lambda f: set_cell("Price", "")(priced_log(f, qty="2"))), "--config",
        write("c.yaml", PRICED_CONFIG)),
         "tx.csv: column 'Price': blank unit price '' in 1 row(s)"),
    Case("date-unparseable", lambda ws: score(ws, log_csv(ws, set_cell("date", "2024-13-01"))),
         "tx.csv: column 'date': cannot parse date '2024-13-01' in 1 row(s); expected ISO 8601"),
    Case("date-mixed-formats", lambda ws: score(ws, log_csv(ws, set_cell("date", "31.12.2023"))),
         "tx.csv: column 'date': cannot parse date '31.12.2023' in 1 row(s)"),
    Case("date-excel-serial", lambda ws: score(ws, log_csv(ws, set_cell("date", "45292"))),
         "tx.csv: column 'date': cannot parse date '45292' in 1 row(s)"),
    Case("date-blank", lambda ws: score(ws, log_csv(ws, set_cell("date", ""))),
         "tx.csv: column 'date': blank date '' in 1 row(s)"),
    Case("date-time-zone-aware",
         lambda ws: score(ws, log_csv(ws, set_cell("date", "2024-01-01T10:00:00+02:00"))),
         "tx.csv: column 'date': time-zone-aware date '2024-01-01T10:00:00+02:00' in 1 row(s)"),
    Case("date-time-zone-aware-parquet", tz_parquet,
         "tx.parquet: column 'date': time-zone-aware date '"),
    Case("date-implausible", lambda ws: score(ws, log_csv(ws, set_cell("date", "1024-01-01"))),
         "tx.csv: column 'date': implausible date '1024-01-01' in 1 row(s); expected years"),
    Case("id-blank", lambda ws: score(ws, log_csv(ws, set_cell("customer_id", "  "))),
         "tx.csv: column 'customer_id': blank customer id '' in 1 row(s)"),
    # -- the transaction log: the file itself
    Case("empty-file", lambda ws: score(ws, write("tx.csv", "")), "tx.csv: file is empty"),
    Case("header-only", lambda ws: score(ws, write("tx.csv", "customer_id,date,amount\n")),
         "tx.csv: no transaction rows (empty file or header only)"),
    Case("blank-first-line", lambda ws: score(ws, write("tx.csv", "\n\ncustomer_id,date,amount\n")),
         "tx.csv: line 1 is empty; expected a header"),
    Case("not-utf8", not_utf8,
         "tx.csv: cannot read line 20271: bytes that are not UTF-8 in 'M?ller GmbH,2024-06-03,"
         "12.5,1.0'; re-export the file as UTF-8, or set encoding: latin-1 in the config"),
    Case("utf16", lambda ws: score(ws, write("tx.csv", ws.tx.to_csv(index=False).encode("utf-16"))),
         "tx.csv: cannot read file: UTF-16 text; re-export the file as UTF-8"),
    Case("ragged-row", lambda ws: score(ws, write(
        "tx.csv", "customer_id,date,amount\n1,2024-01-02,5\n2,2024-01-02,5,7\n")),
        "tx.csv: cannot read line 3: expected 3 fields, found 4 in '2,2024-01-02,5,7'"),
    Case("unclosed-quote", lambda ws: score(ws, write(
        "tx.csv", 'customer_id,date,amount\n1,2024-01-02,"5\n2,2024-01-03,5\n')),
        "tx.csv: cannot read line 2: a quoted value is not closed"),
    Case("ids-beyond-float-precision", float_ids_parquet,
         "tx.parquet: column 'customer_id': 1 id(s) stored as floats at or beyond "
         "9,007,199,254,740,992 (such as 1.2345678901234568e+17)"),
    Case("corrupt-parquet", lambda ws: score(ws, write("tx.parquet", b"PAR1 not really")),
         "tx.parquet: cannot read file:"),
    Case("path-is-empty-folder", lambda ws: score(ws, (Path("d").mkdir() or "d")),
         "d: the folder holds no CSV or Parquet file"),
    Case("glob-no-match", lambda ws: score(ws, "exports/tx-*.csv"),
         "exports/tx-*.csv: no file matches this pattern"),
    Case("parts-header-differs", lambda ws: score(ws, parts(ws, lambda f: f[["date", *(
        c for c in f.columns if c != "date")]])),
         "parts/tx-2.csv: its header differs from parts/tx-1.csv's ('customer_id', 'date', "
         "'amount', 'margin'); every file of parts needs the same columns in the same order"),
    Case("parts-column-types-differ", parquet_parts,
         "pq/p-2.parquet: column 'amount' is stored as DOUBLE, but as VARCHAR in "
         "pq/p-1.parquet; every file of pq needs the same column types"),
    Case("parts-bad-value", lambda ws: score(ws, parts(ws, set_cell("amount", "12 EUR"))),
         "parts/tx-2.csv: column 'amount': not a number '12 EUR' in 1 row(s) of parts;"),
    Case("path-missing", lambda ws: score(ws, "nope.csv"), "nope.csv: file not found"),
    Case("unsupported-extension", lambda ws: score(ws, write("tx.xlsx", b"PK\x03\x04")),
         "tx.xlsx: unsupported file type '.xlsx'"),
    Case("gzip-truncated", lambda ws: score(ws, gzipped(log_csv(ws), lambda b: b[:len(b) // 2])),
         "tx.csv.gz: cannot read file: the gzip data ends early (a truncated copy or "
         "download?); copy or export the file again"),
    Case("gzip-damaged", lambda ws: score(ws, gzipped(log_csv(ws), bad_checksum)),
         "tx.csv.gz: cannot read file: the gzip data is damaged (its CRC-32 checksum does not "
         "match); copy or export the file again"),
    # -- options
    Case("as-of-before-all-data", lambda ws: score(ws, log_csv(ws), "--as-of", "2019-01-01"),
         "tx.csv: --as-of 2019-01-01 is on or before the first transaction (2021-01-01)"),
    Case("date-far-after-the-rest", lambda ws: score(ws, log_csv(ws, lambda f: pd.concat(
        [f, f.iloc[[0]].assign(date="2033-06-30")]))),
         "tx.csv: column 'date': value '2033-06-30' (1 line) lies "),
    Case("date-far-before-the-rest", lambda ws: score(ws, log_csv(ws, lambda f: pd.concat(
        [f.iloc[[0]].assign(date="1921-01-01"), f]))),
         "tx.csv: column 'date': value '1921-01-01' (1 line) lies 36,525 days before every "
         "other line (the earliest after it is 2021-01-01); fix the date or leave the line out"),
    Case("as-of-not-a-date", lambda ws: score(ws, log_csv(ws), "--as-of", "2024/07/01"),
         "--as-of '2024/07/01': expected a date as YYYY-MM-DD"),
    Case("horizon-zero", lambda ws: score(ws, log_csv(ws), "--horizon-days", "0"),
         "--horizon-days 0: must be a positive number of days"),
    Case("horizon-negative", lambda ws: score(ws, log_csv(ws), "--horizon-days", "-30"),
         "--horizon-days -30: must be a positive number of days"),
    Case("horizon-not-a-number", lambda ws: score(ws, log_csv(ws), "--horizon-days", "1y"),
         "Invalid value for '--horizon-days'"),
    Case("horizon-differs-from-model", lambda ws: score(ws, log_csv(ws), "--horizon-days", "365"),
         "model 'models:/keyltv@champion': trained for a 182-day horizon, --horizon-days is 365"),
    Case("option-missing", lambda ws: ["score", "--transactions", log_csv(ws)],
         "Missing option '--out'"),
    Case("option-unknown", lambda ws: score(ws, log_csv(ws), "--output", "x.csv"),
         "No such option: --output"),
    Case("config-missing", lambda ws: score(ws, log_csv(ws), "--config", "nope.yaml"),
         "nope.yaml: config file not found"),
    Case("config-invalid-field",
         with_config("horizon_days: -3\n"),
         "c.yaml: field 'horizon_days' = -3: Input should be greater than or equal to 1"),
    Case("config-bad-memory-limit",
         with_config("engine:\n  memory_limit: 300\n"),
         "c.yaml: field 'engine.memory_limit' = 300: Input should be a valid string"),
    Case("config-memory-limit-without-unit",
         with_config("engine:\n  memory_limit: '300'\n"),
         "c.yaml: field 'engine.memory_limit' = '300': expected a size such as 300MB or 2GB"),
    Case("config-one-column-for-two-roles",
         with_config("columns:\n  amount: null\n  quantity: amount\n  unit_price: amount\n"),
         "tx.csv: columns.quantity and columns.unit_price both name column 'amount'; each "
         "needs a column of its own"),
    Case("config-date-format-time-zone",
         with_config("date_format: '%Y-%m-%d %z'\n"),
         "c.yaml: field 'date_format' = '%Y-%m-%d %z': reads a time zone (%z or %Z)"),
    Case("config-date-format-invalid",
         with_config("date_format: '%Q'\n"),
         "tx.csv: date_format '%Q' is not a strptime format (Unrecognized format for "
         "strftime/strptime: %Q); expected codes such as '%d.%m.%Y' for 31.01.2024"),
    Case("config-quantity-without-unit-price",
         with_config("columns:\n  quantity: Qty\n"),
         "c.yaml: field 'columns' = {'quantity': 'Qty'}: set both quantity and unit_price"),
    Case("config-not-yaml",
         with_config("columns: [a\n"),
         "c.yaml: not a valid YAML file"),
    # -- the account table
    Case("accounts-duplicated-id", lambda ws: score(ws, log_csv(ws), accounts=accounts_csv(
        ws, lambda a: pd.concat([a, a.iloc[[3]]]))),
        "acc.csv: column 'customer_id': duplicated customer id '000004' (1 duplicate row(s))"),
    Case("accounts-blank-id", lambda ws: score(ws, log_csv(ws), accounts=accounts_csv(
        ws, lambda a: a.assign(customer_id=a["customer_id"].mask(a.index == 2, "")))),
        "acc.csv: column 'customer_id': blank customer id in 1 row(s)"),
    Case("accounts-ids-lost-leading-zeros", lambda ws: score(ws, log_csv(ws), accounts=accounts_csv(
        ws, lambda a: a.assign(customer_id=a["customer_id"].astype(int)))),
        "acc.csv: column 'customer_id': none of its 200 ids occurs in tx.csv (e.g. '1' here, "
        "'000001' in the log)"),
    Case("accounts-missing", lambda ws: score(ws, log_csv(ws), accounts="nope.csv"),
         "nope.csv: file not found"),
    Case("accounts-header-only",
         lambda ws: score(ws, log_csv(ws), accounts=write("acc.csv", "customer_id,industry\n")),
         "acc.csv: no account rows (empty file or header only)"),
    Case("accounts-attribute-type-changed", lambda ws: score(ws, log_csv(ws), accounts=accounts_csv(
        ws, lambda a: a.assign(employees=a["employees"].astype(str).mask(a.index % 2 == 0, "many")))),
        "acc.csv: column 'employees': value 'many' is not a number; the model was trained with "
        "numbers"),
    Case("accounts-dates-no-longer-dates", lambda ws: score(ws, log_csv(ws), accounts=accounts_csv(
        ws, lambda a: a.assign(customer_since=a["customer_since"].mask(a.index % 2 == 0, "tbd")))),
        "acc.csv: column 'customer_since': value 'tbd' is not a date (YYYY-MM-DD); the model was "
        "trained with dates in this column"),
    Case("accounts-stray-text-in-numbers", lambda ws: score(ws, log_csv(ws), accounts=accounts_csv(
        ws, lambda a: a.assign(employees=a["employees"].astype(str).mask(a.index == 3, "1O0")))),
        "acc.csv: column 'employees': value '1O0' is not a number, while 199 of its 200 values "
        "are; correct it or leave it blank, or name the column in account_text_columns"),
    Case("accounts-infinite-number", lambda ws: score(ws, log_csv(ws), accounts=accounts_csv(
        ws, lambda a: a.assign(employees=a["employees"].astype(str).mask(a.index == 3, "inf")))),
        "acc.csv: column 'employees': value 'inf' is not a finite number (in 1 row(s)); correct "
        "it or leave it blank"),
    # -- the model
    Case("model-not-registered",
         lambda ws: score(ws, log_csv(ws), "--model", "models:/nope@champion"),
         "model 'models:/nope@champion': cannot be loaded (Registered Model with name=nope not "
         "found); train one first"),
    Case("model-version-missing", lambda ws: score(ws, log_csv(ws), "--model", "models:/keyltv/99"),
         "model 'models:/keyltv/99': cannot be loaded"),
    Case("model-folder-missing", lambda ws: score(ws, log_csv(ws), "--model", "no_model"),
         "model 'no_model': no such model folder"),
    Case("model-folder-not-a-model",
         lambda ws: score(ws, log_csv(ws), "--model", Path("m").mkdir() or "m"),
         "model 'm': cannot be loaded (Could not find an \"MLmodel\" configuration file"),
    Case("model-remote-scheme", lambda ws: score(ws, log_csv(ws), "--model", "s3://bucket/model"),
         "model 's3://bucket/model': scheme 's3' is not allowed"),
    Case("model-other-registry",
         lambda ws: score(ws, log_csv(ws), "--model", "models://evil@example.com/keyltv/1"),
         "a models:// URI names another registry; use models:/... to load from the configured"),
    Case("model-damaged", lambda ws: score(ws, log_csv(ws), "--model", model_copy(ws, True)),
         "model 'model': cannot be loaded (damaged or written by another keyltv version"),
    Case("model-schema-differs", lambda ws: score(ws, log_csv(ws), accounts=None),
         "tx.csv: model input column 'attr_industry' is missing; the model was trained with "
         "account attribute 'industry': pass an --accounts table with it"),
    # -- the output
    Case("out-folder-missing", lambda ws: score(ws, log_csv(ws))[:-2] + ["--out", "no/s.csv"],
         "no/s.csv: folder 'no' does not exist"),
    Case("out-folder-is-a-file", lambda ws: score(ws, log_csv(ws))[:-2] + ["--out", "tx.csv/s.csv"],
         "tx.csv/s.csv: 'tx.csv' is not a folder"),
    Case("out-folder-not-writable",
         lambda ws: score(ws, log_csv(ws))[:-2] + ["--out", f"{unwritable_folder()}/s.csv"],
         "/s.csv: cannot write to folder"),
    Case("out-is-a-directory",
         lambda ws: score(ws, log_csv(ws))[:-2] + ["--out", Path("o.csv").mkdir() or "o.csv"],
         "o.csv: is a directory, expected a file name"),
    Case("out-extension", lambda ws: score(ws, log_csv(ws))[:-2] + ["--out", "s.xlsx"],
         "s.xlsx: output must end in .csv or .parquet, got '.xlsx'"),
    Case("config-horizon-differs-from-model", with_config("horizon_days: 365\n"),
         "model 'models:/keyltv@champion': trained for a 182-day horizon, the config's "
         "horizon_days is 365; retrain with that horizon or remove horizon_days from the config"),
    Case("demo-out-extension", lambda ws: ["demo", "--out", "d.xlsx"],
         "d.xlsx: output must end in .csv or .parquet, got '.xlsx'"),
    Case("out-is-an-input", lambda ws: score(ws, log_csv(ws))[:-2] + ["--out", "tx.csv"],
         "tx.csv: is also the --transactions input, which writing it would replace"),
    Case("previous-matches-no-account",
         lambda ws: score(ws, log_csv(ws), "--previous", previous_scores(["1", "2"])),
         "prev.csv: column 'customer_id': none of its 2 ids is among the 194 accounts scored "
         "now (e.g. '1' there, '000001' here); check leading zeros"),
    Case("previous-from-a-later-run",
         lambda ws: score(ws, log_csv(ws), "--previous",
                          previous_scores(["000001", "000002"], as_of="2099-01-01")),
         "prev.csv: column 'as_of': the file is as of 2099-01-01, after --as-of "),
    Case("previous-as-of-not-iso",
         lambda ws: score(ws, log_csv(ws), "--previous",
                          previous_scores(["000001", "000002"], as_of="12/07/2023")),
         "prev.csv: column 'as_of': value '12/07/2023' is not an ISO date; keyltv writes "
         "YYYY-MM-DD and does not guess day-first or month-first"),
    Case("previous-value-in-another-number-form",
         lambda ws: score(ws, log_csv(ws), "--previous",
                          previous_scores(["000001", "000002"], value="1234,5")),
         "prev.csv: column 'predicted_value': value '1234,5' is not a number; expected a plain "
         "number such as -1234.5 (no currency signs; for 1.234,5 set decimal_separator and "
         "thousands_separator in the config)"),
    Case("previous-not-a-score-file",
         lambda ws: score(ws, log_csv(ws), "--previous", ws.accounts_csv),
         "accounts.csv: column 'tier' is missing; pass an earlier keyltv score file"),
    Case("score-no-order",
         lambda ws: score(ws, log_csv(ws, negated)),
         "tx.csv: column 'amount': no account has a positive day before "),
    # -- training
    Case("train-single-account", lambda ws: ["train", "--transactions", log_csv(
        ws, lambda f: f[f["customer_id"] == "000001"]), "--horizon-days", HORIZON],
        "tx.csv: 1 account(s) before 2024-11-12; train needs at least 10"),
    Case("train-no-repeat-buyer", lambda ws: ["train", "--transactions", log_csv(
        ws, lambda f: f.drop_duplicates("customer_id")), "--horizon-days", HORIZON],
        "no account ordered on more than one day before"),
    Case("train-no-order", lambda ws: ["train", "--transactions", log_csv(
        ws, negated), "--horizon-days", HORIZON],
        "tx.csv: column 'amount': no account has a positive day before "),
    Case("train-holdout-few-buyers", lambda ws: ["train", "--transactions", log_csv(
        ws, lambda f: pd.concat([f, f.iloc[[0]].assign(date="2033-06-30")])), "--as-of",
        "2033-07-01", "--horizon-days", HORIZON],
        "tx.csv: only 1 account(s) seen before "),
    Case("train-history-too-short", lambda ws: ["train", "--transactions", log_csv(
        ws, lambda f: f[f["date"] < "2021-01-20"]), "--horizon-days", HORIZON],
        "tx.csv: only 19 days of history before 2021-01-20: too short to train"),
    Case("train-as-of-after-data", lambda ws: ["train", "--transactions", log_csv(ws),
                                               "--as-of", "2026-01-01", "--horizon-days",
                                               HORIZON],
         "tx.csv: --as-of 2026-01-01 is after the log's last transaction ("),
    Case("horizon-above-ten-years", lambda ws: score(ws, log_csv(ws), "--horizon-days", "5000"),
         "--horizon-days 5000: at most 3660 days (ten years)"),
    Case("evaluate-cutoff-too-early", lambda ws: ["evaluate", "--transactions", log_csv(ws),
                                                  "--cutoff", "2021-02-01", "--horizon-days",
                                                  HORIZON],
         "tx.csv: --cutoff 2021-02-01: its earliest origin, "),
    Case("evaluate-single-account", lambda ws: ["evaluate", "--transactions", log_csv(
        ws, lambda f: f[f["customer_id"] == "000001"]), "--cutoff", "2024-03-01",
        "--horizon-days", HORIZON],
        "tx.csv: 1 account(s) before 2023-12-01; evaluate needs at least 10"),
    Case("evaluate-no-repeat-buyer", lambda ws: ["evaluate", "--transactions", log_csv(
        ws, lambda f: f.drop_duplicates("customer_id")), "--cutoff", "2024-06-01",
        "--horizon-days", HORIZON],
        "no account ordered on more than one day before 2024-03-02"),
    # Every account seen before the last origin stops buying at it, but one: a Gini over
    # one buyer is 1.0 for every model, and the table named a champion (audit 28).
    Case("evaluate-holdout-few-buyers", lambda ws: ["evaluate", "--transactions", log_csv(
        ws, lambda f: f[(f["date"] < "2024-03-01") | (f["customer_id"] == "000001")]),
        "--cutoff", "2024-03-01", "--horizon-days", HORIZON],
        "tx.csv: only 1 account(s) seen before 2024-03-01 bought from 2024-03-01 to "
        "2024-08-30; the backtest needs 5 to rank models; check --cutoff against the log's "
        "dates"),
    Case("evaluate-cutoff-after-data", lambda ws: ["evaluate", "--transactions", log_csv(ws),
                                                   "--cutoff", "2024-10-01", "--horizon-days",
                                                   HORIZON],
         "tx.csv: --cutoff 2024-10-01 + 182 days ends after the last transaction (2024-12-"),
    # Every model listed skipped: KeyError 'normalized_gini', exit 1 (audit 29).
    Case("train-no-model-fits", lambda ws: [
        "train", "--transactions", log_csv(ws), "--horizon-days", HORIZON, "--config",
        write("c.yaml", "models: [lightgbm]\ntraining:\n  min_feature_days: 2000\n")],
        "tx.csv: no model of the config's models could be fitted at the selection cutoff "),
    Case("train-horizon-zero", lambda ws: ["train", "--transactions", log_csv(ws),
                                           "--horizon-days", "0"],
         "--horizon-days 0: must be a positive number of days"),
]


@pytest.mark.parametrize("case", REJECTED, ids=[c.id for c in REJECTED])
def test_rejected_input_exits_2_with_one_line_and_no_output(workspace, in_case, case):
    result = run_cli(*case.prepare(workspace))
    assert result.code == 2, (result.out[-1000:], result.err[-3000:])
    assert len(result.errors) == 1, result.err[-3000:]
    assert case.message in result.errors[0], result.errors[0]
    assert "Traceback" not in result.err
    assert not (in_case / "scores.csv").exists()
    leftovers = [p.name for p in in_case.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def score_file() -> pd.DataFrame:
    return pd.read_csv("scores.csv", dtype={"customer_id": str})


def returned_account(frame: pd.DataFrame) -> pd.DataFrame:
    """Account 000003 returns every line it ever bought: its net value is 0."""
    lines = frame[frame["customer_id"] == "000003"]
    credit = lines.assign(amount=(-lines["amount"].astype(float)).astype(str),
                          margin=(-lines["margin"].astype(float)).astype(str))
    return pd.concat([frame, credit])


def credit_only_account(frame: pd.DataFrame) -> pd.DataFrame:
    """Account 000003 has only credit notes: its orders predate the export."""
    mine = frame["customer_id"] == "000003"
    return frame.assign(amount=frame["amount"].mask(mine, negated(frame[mine])["amount"]))


def with_outlier(frame: pd.DataFrame) -> pd.DataFrame:
    frame.iloc[-1, frame.columns.get_loc("amount")] = "2500000000"  # a typo'd 25.00
    return frame


HANDLED = [
    Case("gzipped-inputs", lambda ws: score(
        ws, gzipped(log_csv(ws)), "--previous", gzipped(previous_scores(["000001", "gone-1"])),
        accounts=gzipped(accounts_csv(ws, lambda a: a))), "previous_accounts_not_scored=1",
        code=0),
    Case("leading-zeros-and-excel-dialect",
         lambda ws: score(ws, log_csv(ws, sep=";", lineterminator="\r\n", encoding="utf-8-sig")),
         "accounts_scored=194", code=0),
    Case("duplicate-lines", lambda ws: score(ws, log_csv(ws, lambda f: pd.concat([f, f.head(7)]))),
         "duplicate_lines=7", code=0),
    Case("id-padded-with-whitespace", lambda ws: score(ws, log_csv(
        ws, set_cell("customer_id", " 000001 "))), "ids_stripped_of_whitespace=1", code=0),
    Case("id-with-zero-width-space", lambda ws: score(ws, log_csv(
        ws, set_cell("customer_id", "000001\u200b"))), "ids_stripped_of_whitespace=1", code=0),
    Case("ids-written-as-decimals", lambda ws: score(ws, log_csv(
        ws, set_cell("customer_id", "000001.0"))), "ids_ending_in_point_zero=1", code=0),
    Case("returns-and-fully-returned-account", lambda ws: score(ws, log_csv(ws, returned_account)),
         "return_lines=724", code=0),
    Case("credit-only-account", lambda ws: score(ws, log_csv(ws, credit_only_account)),
         "accounts_without_orders_scored_zero=1", code=0),
    Case("zero-amounts", lambda ws: score(ws, log_csv(ws, lambda f: f.assign(
        amount=f["amount"].mask(f.index % 1000 == 1, "0")))), "zero_amount_lines=21", code=0),
    Case("margin-blank-on-some-lines", lambda ws: score(ws, log_csv(ws, lambda f: f.assign(
        margin=f["margin"].mask(f.index % 100 == 0, "")))), "missing_margin_lines=203", code=0),
    Case("margin-blank-for-an-account", lambda ws: score(ws, log_csv(ws, lambda f: f.assign(
        margin=f["margin"].mask(f["customer_id"] == "000004", "")))),
        "accounts_given_the_book_margin_rate=1", code=0),
    Case("absurd-outlier-kept", lambda ws: score(ws, log_csv(ws, with_outlier)),
         "outlier_lines=1", code=0),
    Case("dates-after-as-of", lambda ws: score(ws, log_csv(ws), "--as-of", "2024-07-01"),
         "lines_on_or_after_as_of=3337", code=0),
    Case("as-of-long-after-data", lambda ws: score(ws, log_csv(ws), "--as-of", "2025-06-30"),
         "days_after_last_transaction=180", code=0),
    Case("single-account", lambda ws: score(ws, log_csv(
        ws, lambda f: f[f["customer_id"] == "000001"])), "accounts_scored=1", code=0),
    Case("no-repeat-buyer", lambda ws: score(ws, log_csv(
        ws, lambda f: f.drop_duplicates("customer_id"))), "accounts_scored=194", code=0),
    Case("accounts-ids-missing-from-log", lambda ws: score(ws, log_csv(ws), accounts=accounts_csv(
        ws, lambda a: pd.concat([a, a.head(3).assign(customer_id=["x1", "x2", "x3"])]))),
        "accounts_without_transactions=9", code=0),
    Case("log-ids-missing-from-accounts", lambda ws: score(ws, log_csv(ws), accounts=accounts_csv(
        ws, lambda a: a.iloc[5:])), "accounts_without_attributes=5", code=0),
    Case("model-local-folder", lambda ws: score(ws, log_csv(ws), "--model", model_copy(ws)),
         "accounts_scored=194", code=0),
    Case("margin-above-amount", lambda ws: score(ws, log_csv(ws, lambda f: set_cell(
        "margin", "25")(set_cell("amount", "10")(f)))), "margin_above_amount_lines=1", code=0),
    Case("amount-below-precision", lambda ws: score(ws, log_csv(
        ws, set_cell("amount", "0.0000001"))), "amount_below_precision_lines=1", code=0),
    Case("log-without-margins-for-a-margin-model", lambda ws: score(
        ws, log_csv(ws, lambda f: f.drop(columns="margin"))), "accounts_without_margins=194",
        code=0),
    Case("previous-accounts-not-scored", lambda ws: score(
        ws, log_csv(ws), "--previous", previous_scores(["000001", "000002", "gone-1"])),
        "previous_accounts_not_scored=1", code=0),
    Case("attribute-level-unseen-in-training", lambda ws: score(
        ws, log_csv(ws), accounts=accounts_csv(ws, lambda a: a.assign(
            industry=a["industry"].mask(a.index < 2, "space mining")))),
        "attribute_values_unseen_in_training=2", code=0),
    Case("accounts-missing-value-marker", lambda ws: score(
        ws, log_csv(ws), accounts=accounts_csv(ws, lambda a: a.assign(
            employees=a["employees"].astype(str).mask(a.index < 2, "n/a")))),
        "attribute_values_read_as_missing=2", code=0),
    Case("accounts-date-placeholder", lambda ws: score(
        ws, log_csv(ws), accounts=accounts_csv(ws, lambda a: a.assign(
            customer_since=a["customer_since"].mask(a.index < 2, "tbd")))),
        "attribute_values_read_as_missing=2, attribute_columns_read_as_dates=1", code=0),
    Case("accounts-id-like-column", lambda ws: score(ws, log_csv(ws), accounts=accounts_csv(
        ws, lambda a: a.assign(vat_id=[f"FR{i}" for i in range(len(a))]))),
        "attribute_columns_ignored_as_ids=1", code=0),
    Case("account-id-with-zero-width-space", lambda ws: score(
        ws, log_csv(ws), accounts=accounts_csv(ws, lambda a: a.assign(
            customer_id=a["customer_id"].mask(a.index == 0, "000001\u200b")))),
        "account_ids_stripped_of_whitespace=1", code=0),
]


@pytest.mark.parametrize("case", HANDLED, ids=[c.id for c in HANDLED])
def test_handled_input_is_counted_and_every_account_scored(workspace, in_case, case):
    args = case.prepare(workspace)
    result = run_cli(*args)
    assert result.code == 0, result.err[-3000:]
    counted = [line for line in result.out.splitlines() if line.startswith("Counted:")]
    assert len(counted) == 1 and case.message in counted[0], result.out
    scores = score_file()
    with (gzip.open if args[2].endswith(".gz") else open)(args[2], "rt",
                                                          encoding="utf-8-sig") as handle:
        delimiter = csv.Sniffer().sniff(handle.readline()).delimiter
    used = pd.read_csv(args[2], sep=delimiter, dtype=str, encoding="utf-8-sig")
    as_of = args[args.index("--as-of") + 1] if "--as-of" in args else used["date"].max() + "~"
    # Ids as typed, zeros kept; whitespace and invisible characters at an edge are
    # stripped (and counted).
    stripped = "".join(map(chr, STRIPPED_CODES))
    seen = set(used.loc[used["date"] < as_of, "customer_id"].str.strip(stripped))
    assert sorted(scores["customer_id"]) == sorted(seen)
    assert scores["customer_id"].str.startswith("0").all()
    assert scores["tier"].isin(["A", "B", "C", "D"]).all()
    assert scores["p_alive"].between(0, 1).all() and (scores["predicted_value"] >= 0).all()


def test_fully_returned_account_is_scored_with_no_value(workspace, in_case):
    assert run_cli(*score(workspace, log_csv(workspace, returned_account))).code == 0
    row = score_file().set_index("customer_id").loc["000003"]
    assert row["trailing_value"] == 0 and row["predicted_value"] >= 0


def test_outlier_is_kept_in_the_value(workspace, in_case):
    assert run_cli(*score(workspace, log_csv(workspace, with_outlier))).code == 0
    account = workspace.tx["customer_id"].iloc[-1]
    row = score_file().set_index("customer_id").loc[account]
    assert row["trailing_value"] > 2.5e9


def test_train_falls_back_when_no_account_repeats_before_the_backtest_cutoff(workspace, in_case):
    # 60 accounts buy once in 2022; 40 of them buy again from September 2023 on, after
    # the backtest cutoff (half the horizon before the end), so BG/NBD has no repeat
    # buyer at that cutoff and is skipped with its reason.
    rng = pd.Series(range(60))
    first = pd.Timestamp("2022-01-01") + pd.to_timedelta(rng * 6, unit="D")
    again = pd.Timestamp("2023-09-01") + pd.to_timedelta(rng[:40] * 2, unit="D")
    ids = [f"{i:05d}" for i in range(60)]
    frame = pd.concat([
        pd.DataFrame({"customer_id": ids, "date": first, "amount": 100.0 + 10 * rng}),
        pd.DataFrame({"customer_id": ids[:40], "date": again, "amount": 120.0 + 5 * rng[:40]}),
    ])
    frame.to_csv("late.csv", index=False)
    write("late.yaml", FAST_CONFIG + "tracking:\n  model_name: keyltv_late_repeat\n")
    result = run_cli("train", "--transactions", "late.csv", "--config", "late.yaml",
                     "--horizon-days", HORIZON)
    assert result.code == 0, result.err[-3000:]
    assert "skipped bgnbd: no account has a repeat order before the cutoff" in result.out
    assert "Champion: trailing" in result.out


# A mistyped year on the log's last line; every other line is in 2023.
TYPO_LOG = ("customer_id,date,amount\n1,2023-11-02,50\n2,2023-12-30,20\n1,2023-12-31,30\n"
            "2,2032-12-31,40\n")


def store_runs(ws: Workspace) -> int:
    import sqlite3

    with contextlib.closing(sqlite3.connect(ws.root / "mlflow.db")) as db:
        return db.execute("SELECT count(*) FROM runs").fetchone()[0]


@pytest.mark.parametrize("command", [["train", "--horizon-days", HORIZON],
                                     ["score", "--out", "scores.csv"]], ids=["train", "score"])
def test_a_far_last_day_is_refused_as_the_default_as_of_leaving_nothing(workspace, in_case,
                                                                      command):
    write("tx.csv", TYPO_LOG)
    runs = store_runs(workspace)
    result = run_cli(command[0], "--transactions", "tx.csv", *command[1:])
    assert result.code == 2, result.err[-3000:]
    assert result.errors == [
        "error: tx.csv: column 'date': value '2032-12-31' (1 line) lies 3,288 days after every "
        "other line (the latest before it is 2023-12-31) and would set the as-of date; fix "
        "the date or pass --as-of"]
    assert "Traceback" not in result.err
    assert sorted(p.name for p in in_case.iterdir()) == ["tx.csv"]
    assert store_runs(workspace) == runs


def test_with_an_as_of_a_far_last_day_is_not_checked(workspace, in_case):
    # The typo is then only a line after --as-of: train goes on to its next rule.
    write("tx.csv", TYPO_LOG)
    result = run_cli("train", "--transactions", "tx.csv", "--as-of", "2024-01-01")
    assert result.errors == ["error: tx.csv: 2 account(s) before 2024-01-01; train needs at "
                             "least 10; score them with an existing model instead"]


def test_unwritable_output_fails_before_the_expensive_work(workspace, in_case, monkeypatch):
    from keyltv import workflows

    def must_not_run(*args, **kwargs):
        raise AssertionError("the log was read before the output path was checked")

    monkeypatch.setattr(workflows, "load_inputs", must_not_run)
    monkeypatch.setattr(workflows, "open_store", must_not_run)
    result = run_cli("score", "--transactions", "tx.csv", "--out", "no/such/folder/s.csv")
    assert result.code == 2 and result.errors == [
        "error: no/such/folder/s.csv: folder 'no/such/folder' does not exist"]


# --- the tracking server ----------------------------------------------------------------


@pytest.fixture
def silent_server():
    """A TCP server that accepts connections and never answers (a hung tracking server)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("server", ["refused", "silent"])
def test_unreachable_tracking_server_fails_fast_without_leaking_the_password(
        workspace, in_case, monkeypatch, request, server):
    port = closed_port() if server == "refused" else request.getfixturevalue("silent_server")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://bob:hunter2@127.0.0.1:{port}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    started = time.perf_counter()
    result = run_cli(*score(workspace, log_csv(workspace)))
    assert time.perf_counter() - started < 30  # MLflow's defaults would retry for minutes
    assert result.code == 2
    assert len(result.errors) == 1
    assert f"MLflow tracking store 'http://bob:***@127.0.0.1:{port}': cannot be reached" \
        in result.errors[0]
    assert "hunter2" not in result.err + result.out
    assert not Path("scores.csv").exists()


# --- safety and reproducibility -------------------------------------------------------------


def test_no_credential_is_written_to_the_store_artifacts_or_outputs(workspace):
    assert CANARY not in workspace.trained.out + workspace.trained.err
    for path in workspace.root.rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path


def test_every_run_logs_the_seed_and_the_data_fingerprint(workspace):
    from mlflow import MlflowClient

    client = MlflowClient(workspace.uri)
    experiment = client.get_experiment_by_name("keyltv")
    runs = [r for r in client.search_runs([experiment.experiment_id])
            if r.info.run_name in ("train", "score")]
    assert {r.info.run_name for r in runs} == {"score", "train"}
    for run in runs:
        params = run.data.params
        assert params["seed"] == "42"
        assert len(params["data_hash"]) == 16, params
    # A scoring run counts every tier and segment, zeros included; train logs where each
    # flag threshold came from.
    score_run = next(r for r in runs if r.info.run_name == "score")
    assert {f"segment_{s}" for s in ("at_risk", "sleeping", "key", "growing", "cultivate",
                                     "ordinary")} <= set(score_run.data.metrics)
    train_run = next(r for r in runs if r.info.run_name == "train")
    assert train_run.data.params["flag_thresholds"].startswith("at_risk_decline: set at scoring")
    # Where the data came from, as an absolute path, and the horizon scored (audit 28).
    assert Path(train_run.data.params["data_source_path"]).is_absolute()
    assert Path(score_run.data.params["transactions_path"]).is_absolute()
    assert score_run.data.params["horizon_days"] == HORIZON
    # The scoring run logs the thresholds it used, exactly, and where each came from.
    for name in ("at_risk_decline", "high_potential_growth"):
        assert 0 <= float(score_run.data.params[f"threshold_{name}"]) <= 1
        assert score_run.data.params[f"threshold_{name}_source"] in (
            "expected precision", "learned in training", "the config")


def test_mlflow_ui_binds_to_localhost_by_default():
    makefile = (Path(__file__).parents[1] / "Makefile").read_text()
    assert "HOST    ?= 127.0.0.1" in makefile.replace("\t", " ")
    ui = makefile.split("\nui:", 1)[1].split("\n\n", 1)[0]
    assert "--host $(HOST)" in ui


def test_lines_without_an_id_are_dropped_and_counted_when_the_config_says_so(workspace, in_case):
    blanked = lambda f: f.assign(  # noqa: E731
        customer_id=f["customer_id"].mask(f.index % 1000 == 3, ""))
    refused = run_cli(*score(workspace, log_csv(workspace, blanked)))
    assert refused.code == 2 and "drop_blank_ids: true in the config" in refused.err
    config = write("drop.yaml", "drop_blank_ids: true\n")
    result = run_cli(*score(workspace, log_csv(workspace, blanked), "--config", config))
    assert result.code == 0, result.err[-3000:]
    counted = [line for line in result.out.splitlines() if line.startswith("Counted:")]
    dropped = int((workspace.tx.index % 1000 == 3).sum())
    assert len(counted) == 1 and f"blank_id_lines_dropped={dropped}" in counted[0], result.out
    kept = workspace.tx[workspace.tx.index % 1000 != 3]
    assert set(score_file()["customer_id"]) == set(kept["customer_id"])


def test_train_prints_what_it_counted(workspace):
    # train (like score) says what it handled, not only the run's MLflow artifact.
    assert "Counted: return_lines=" in workspace.trained.out
    assert "attribute_columns_read_as_dates=1" in workspace.trained.out
    assert "attribute_columns_ignored_as_ids=1" in workspace.trained.out


def test_the_model_records_the_columns_it_left_out_as_ids(workspace):
    import cloudpickle

    with open(next(workspace.model_dir.rglob("bundle.pkl")), "rb") as handle:
        bundle = cloudpickle.load(handle)
    assert bundle.ignored_attributes == {"vat_id": "200 distinct values in 200 non-blank rows"}
    assert "attr_vat_id" not in bundle.feature_columns
    assert "attr_customer_since_days_before" in bundle.feature_columns


def test_profit_is_not_invented_for_a_log_without_margins(workspace, in_case):
    result = run_cli(*score(workspace, log_csv(workspace, lambda f: f.drop(columns="margin"))))
    assert result.code == 0, result.err[-2000:]
    scores = score_file()
    assert "predicted_profit" not in scores.columns and "low_margin_key" not in scores.columns


# Ids that a spreadsheet would run as formulas, and two plain numbers that it would not.
FORMULA_IDS = {"000001": "=1+1", "000002": "@SUM(A1)", "000003": "-2+3", "000004": "-123",
               "000005": "+44"}


def test_formula_ids_are_written_as_text_and_still_match_as_previous(workspace, in_case):
    def renamed(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(customer_id=frame["customer_id"].replace(FORMULA_IDS))

    log, accounts = log_csv(workspace, renamed), accounts_csv(workspace, renamed)
    first = run_cli(*score(workspace, log, accounts=accounts))
    assert first.code == 0, first.err[-2000:]
    assert "cells_escaped_for_spreadsheets=3" in first.out  # on the Counted: line
    cells = {row[0] for row in csv.reader(io.StringIO(Path("scores.csv").read_text()))}
    assert {"'=1+1", "'@SUM(A1)", "'-2+3", "-123", "+44"} <= cells
    assert not {"=1+1", "@SUM(A1)", "-2+3"} & cells
    Path("scores.csv").rename("earlier.csv")
    again = run_cli(*score(workspace, log, "--previous", "earlier.csv", accounts=accounts))
    assert again.code == 0, again.err[-2000:]
    assert "previous_accounts_not_scored" not in again.out  # printed when above 0
    scores = pd.read_csv("scores.csv", dtype={"customer_id": str}).set_index("customer_id")
    earlier = pd.read_csv("earlier.csv", dtype={"customer_id": str}).set_index("customer_id")
    for raw in FORMULA_IDS.values():  # each found in the earlier file by its own id
        cell = raw if raw in ("-123", "+44") else "'" + raw
        assert scores.loc[cell, "previous_tier"] == earlier.loc[cell, "tier"]
        assert scores.loc[cell, "tier_change"] == "same"
    assert (scores["tier_change"] != "new").all()


def test_a_database_uri_without_its_driver_is_one_line(workspace, in_case, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://bob:hunter2@127.0.0.1:1/db")
    result = run_cli(*score(workspace, log_csv(workspace)))
    assert result.code == 2 and len(result.errors) == 1, result.err[-2000:]
    assert "MLflow tracking store 'postgresql://bob:***@127.0.0.1:1/db': needs the Python " \
           "module" in result.errors[0]
    assert "hunter2" not in result.err + result.out


def test_version_and_bare_command():
    assert run_cli("--version").out.strip().startswith("keyltv ")
    # A scheduler that lost the arguments must not see a success (see test_cli).
    bare = run_cli()
    assert bare.code == 2 and bare.out == "" and "Usage" in bare.err
    assert bare.errors == ["error: no command given; expected one of train, score, evaluate, "
                           "features, demo"]
