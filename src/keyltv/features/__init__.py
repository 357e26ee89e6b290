"""Per-account features and labels, cut at an explicit ``as_of`` date.

This package is the only place where time is cut: features use transactions strictly
before ``as_of``; labels use ``[as_of, as_of + horizon_days)``.
"""

from keyltv.features.accounts import (
    training_cutoffs,
    with_attributes,
    FEATURE_COLUMNS,
    account_features,
    future_values,
    training_frame,
)

__all__ = [
    "FEATURE_COLUMNS",
    "account_features",
    "future_values",
    "training_cutoffs",
    "training_frame",
    "with_attributes",
]
