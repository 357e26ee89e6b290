"""Per-account features and labels, cut at an explicit ``as_of`` date.

This package is the only place where time is cut: features use transactions strictly
before ``as_of``; labels use ``[as_of, as_of + horizon_days)``.
"""

from keyltv.features.accounts import (
    FEATURE_COLUMNS,
    account_features,
    future_values,
    sampled_training_frame,
    training_cutoffs,
    training_frame,
    with_attributes,
    write_account_features,
)

__all__ = [
    "FEATURE_COLUMNS",
    "account_features",
    "future_values",
    "training_cutoffs",
    "sampled_training_frame",
    "training_frame",
    "with_attributes",
    "write_account_features",
]
