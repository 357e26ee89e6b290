"""keyltv: key-account lifetime value from a transaction log.

The package is laid out as the data flows: ``data`` (contract, validation, loaders)
-> ``features`` (per-account tables cut at ``as_of``) -> ``models`` (scikit-learn
estimators) -> ``evaluation`` (metrics, backtests, plots) -> ``tracking`` (the only
module that imports MLflow) -> ``scoring`` (tiers, segments, flags, reports), with a
thin ``cli`` on top.
"""

__version__ = "0.1.0"
