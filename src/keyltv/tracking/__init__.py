"""All MLflow access: runs, metrics, artifacts, the pyfunc model, registry and aliases.

This package is the only place that imports mlflow, so models and features stay
testable without a tracking store and the MLflow API surface is in one package:
:mod:`keyltv.tracking.store` (runs, artifacts, registry, aliases) and
:mod:`keyltv.tracking.pyfunc` (what a registered model holds, and loading it).
"""

from keyltv.tracking.store import (
    CHAMPION_ALIAS,
    Store,
    connect,
    resolve_tracking_uri,
)

__all__ = ["CHAMPION_ALIAS", "Store", "connect", "resolve_tracking_uri"]
