"""The evaluate job: nested rolling-origin evaluation of every model, and its JSON form."""

from __future__ import annotations

from datetime import date

import numpy as np

from keyltv.config import Config
from keyltv.data.schema import InputError, as_date
from keyltv.evaluation.backtest import MIN_HISTORY_DAYS
from keyltv.evaluation.origins import OriginResult, evaluate_origin, rolling_origins
from keyltv.inputs import Inputs, ignored_attributes
from keyltv.workflows.guards import check_evaluable


def evaluate(inputs: Inputs, config: Config, last_origin: date) -> list[OriginResult]:
    """Nested evaluation at ``last_origin`` and ``backtest.n_origins - 1`` earlier ones."""
    last_origin = as_date(last_origin, "cutoff")
    origins = rolling_origins(last_origin, config.backtest.n_origins, config.backtest.step_days)
    # The origins step back from --cutoff: name the option, not an origin the user never gave.
    history = (origins[0] - inputs.log.first_date).days
    if history < MIN_HISTORY_DAYS:
        raise InputError(
            f"{inputs.log.source}: --cutoff {last_origin}: its earliest origin, {origins[0]} "
            f"({len(origins)} origins, backtest.step_days {config.backtest.step_days} apart), "
            f"leaves {max(history, 0)} days of history after the first transaction "
            f"({inputs.log.first_date}); {MIN_HISTORY_DAYS} are needed: use a later "
            "--cutoff or fewer backtest.n_origins")
    check_evaluable(inputs, config, last_origin, origins)
    ignored_attributes(inputs, config)  # said once here; every fit leaves them out
    return [evaluate_origin(inputs.log, origin, config, inputs.accounts) for origin in origins]


def evaluation_json(results: list[OriginResult]) -> dict[str, object]:
    """Plain-JSON form of an evaluation, for ``keyltv evaluate --out``."""
    def clean(value: object) -> object:
        return None if isinstance(value, float) and not np.isfinite(value) else value

    return {
        str(r.origin): {
            "champion": r.champion,
            "interval_coverage": r.coverage,
            "models": {m: {k: clean(float(v)) for k, v in row.items()}
                       for m, row in r.table.drop(columns=["origin", "champion"]).iterrows()},
            "events": {k: clean(v) for k, v in r.outer.event_metrics.items()},
            "flags": {k: clean(v) for k, v in r.flags.items()},
            "threshold_sources": r.threshold_sources,
            "skipped": r.outer.skipped,
            "season": r.season,
        }
        for r in results
    }
