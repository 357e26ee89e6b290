"""Small shared checks on the feature frames that models receive."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd


def require_columns(X: object, columns: Iterable[str], owner: str) -> None:
    """Raise ``ValueError`` naming the first missing column.

    Models take labelled frames because each reads specific features (``frequency``,
    ``trailing_value``...); a bare array would silently shift columns.
    """
    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"{owner} expects a pandas DataFrame of account features, got {type(X).__name__}")
    missing = [c for c in columns if c not in X.columns]
    if missing:
        raise ValueError(f"{owner}: feature column {missing[0]!r} is missing from the input")


def require_finite(X: pd.DataFrame, columns: Iterable[str], owner: str, *,
                   missing_ok: bool = False) -> None:
    """Raise ``ValueError`` naming the first column with an infinite (or missing) value.

    An infinite feature has no place on a tree's split or in a likelihood: LightGBM
    sends it to one side of every split as if it were huge, lifetimes turns it into
    a NaN prediction. ``missing_ok`` lets NaN through for models that handle it.
    Column by column, so that no copy of the whole frame is made.
    """
    for column in columns:
        values = X[column].to_numpy(dtype=float)
        bad = np.isinf(values) if missing_ok else ~np.isfinite(values)
        if bad.any():
            what = "infinite" if missing_ok else "missing or infinite"
            raise ValueError(f"{owner}: feature column {column!r} has {int(bad.sum())} {what} "
                             "value(s)")
