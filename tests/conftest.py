"""Shared fixtures: tiny hand-typed logs, the bundled CDNOW log, a throwaway MLflow store."""

from __future__ import annotations

import os

# Before LightGBM loads its OpenMP runtime: no busy-waiting threads on a shared 2-core box.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from keyltv.data.transactions import load_transactions  # noqa: E402


def frame(rows: list[tuple], columns=("customer_id", "date", "amount")) -> pd.DataFrame:
    """A transaction frame from hand-typed tuples (dates as ISO strings)."""
    return pd.DataFrame(rows, columns=list(columns))


def write_csv(tmp_path, text: str, name: str = "tx.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def random_frame(lines: int, accounts: int, seed: int, *, margin: bool = False) -> pd.DataFrame:
    """A seeded random log over 2021-2024: lognormal amounts, 5% returns, optional margins.

    For tests that need more rows than can be typed by hand (parallel reads, engines).
    """
    rng = np.random.default_rng(seed)
    days = pd.to_timedelta(rng.integers(0, 1_400, lines), unit="D")
    out = pd.DataFrame({
        "customer_id": rng.integers(0, accounts, lines).astype(str),
        "date": (pd.Timestamp("2021-01-01") + days).strftime("%Y-%m-%d"),
        "amount": np.round(rng.lognormal(5, 1.5, lines)
                           * rng.choice([1, -1], lines, p=[0.95, 0.05]), 2),
    })
    if margin:
        out["margin"] = np.round(rng.lognormal(3, 1, lines), 2)
    return out


@pytest.fixture
def tiny_rows() -> list[tuple]:
    # Account 00042: three orders, one same-day return. Account 7: one order, then a
    # credit note on a later day. Account 00003: only after 2024-03-01.
    return [
        ("00042", "2024-01-01", 100.0),
        ("00042", "2024-01-01", -20.0),
        ("00042", "2024-01-11", 50.0),
        ("00042", "2024-02-10", 30.0),
        ("7", "2024-01-05", 40.0),
        ("7", "2024-01-20", -40.0),
        ("00003", "2024-03-05", 10.0),
    ]


@pytest.fixture
def tiny_log(tiny_rows):
    return load_transactions(frame(tiny_rows), label="tiny")


@pytest.fixture(scope="session")
def cdnow_log():
    from keyltv.data.cdnow import load_cdnow

    return load_transactions(load_cdnow(), label="CDNOW")


@pytest.fixture
def tracking_uri(tmp_path, monkeypatch) -> str:
    """A fresh SQLite MLflow store for one test, via the environment like a scheduler."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri
