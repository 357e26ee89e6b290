"""Small shared checks on the feature frames that models receive."""

from __future__ import annotations

from collections.abc import Iterable

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
