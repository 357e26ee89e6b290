"""Per-account features and labels, cut at an explicit ``as_of`` date.

This package is the only place where time is cut: features use transactions strictly
before ``as_of``; labels use ``[as_of, as_of + horizon_days)``.

:mod:`~keyltv.features.definitions` holds the feature query and writes its table from
DuckDB; :mod:`~keyltv.features.accounts` turns it into pandas frames. The frame
functions are imported on first use: ``keyltv features`` never needs pandas, whose
import took half a second of that command's start.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from keyltv.features.definitions import FEATURE_COLUMNS, write_account_features

if TYPE_CHECKING:
    from keyltv.features.accounts import (
        account_features,
        future_values,
        sampled_training_frame,
        training_cutoffs,
        training_frame,
        with_attributes,
    )

_FRAME_FUNCTIONS = ("account_features", "future_values", "sampled_training_frame",
                    "training_cutoffs", "training_frame", "with_attributes")

__all__ = [
    "FEATURE_COLUMNS",
    "account_features",
    "future_values",
    "sampled_training_frame",
    "training_cutoffs",
    "training_frame",
    "with_attributes",
    "write_account_features",
]


def __getattr__(name: str) -> object:
    """Import :mod:`keyltv.features.accounts` when one of its functions is first used."""
    if name in _FRAME_FUNCTIONS:
        return getattr(import_module("keyltv.features.accounts"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
