"""Nested rolling-origin evaluation: what keyltv would have delivered at each origin.

At an origin, the champion is selected by a backtest inside the history before it
(:func:`keyltv.evaluation.backtest.select_champion`) and judged, beside every model
and peer, by a second backtest on the horizon after it (``keyltv evaluate``,
``bench-accuracy``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd

from keyltv.config import Config
from keyltv.data.transactions import TransactionLog
from keyltv.evaluation.backtest import BacktestResult, apply_blend, backtest, select_champion
from keyltv.evaluation.flags import flag_metrics, learn_flag_thresholds, scoring_thresholds
from keyltv.features.accounts import year_ago_ratio


@dataclass
class OriginResult:
    """What keyltv would have delivered at one origin, next to every model and peer."""

    origin: date
    champion: str
    table: pd.DataFrame
    selection: BacktestResult
    outer: BacktestResult
    coverage: float
    flags: dict[str, float] = field(default_factory=dict)
    # Next-to-trailing value ratios: a year before the origin, the champion's, realized
    # (see season_ratios); empty where the log does not reach back a year and a horizon.
    season: dict[str, float] = field(default_factory=dict)
    # Where each threshold of ``flags`` came from (see keyltv.scoring.rules.resolve_thresholds).
    threshold_sources: dict[str, str] = field(default_factory=dict)


def evaluate_origin(
    log: TransactionLog, origin: date, config: Config, accounts: pd.DataFrame | None = None
) -> OriginResult:
    """Nested evaluation at ``origin``: select the champion on data before it, judge after.

    The ``keyltv`` row of the table is the champion chosen by
    :func:`~keyltv.evaluation.backtest.select_champion`
    using only data before ``origin``, with its 80% interval calibrated on that
    selection holdout; its coverage is measured on ``[origin, origin + horizon)``.
    """
    from keyltv.models.interval import BandedIntervals

    selection, champion = select_champion(log, origin, config, accounts)
    outer = backtest(log, origin, config, accounts)
    if selection.blend_weights:
        apply_blend(outer, selection.blend_weights, selection.blend_idle_days)
    if champion not in outer.predictions:
        raise ValueError(f"champion {champion} could not be refitted at {origin}: "
                         f"{outer.skipped.get(champion)}")
    intervals = BandedIntervals().fit(selection.predictions[champion],
                                      selection.predictions["actual"])
    low, high = intervals.predict(outer.predictions[champion])
    actual = outer.predictions["actual"]
    coverage = float(((actual >= low) & (actual <= high)).mean())
    table = outer.table.copy()
    table.loc["keyltv"] = outer.table.loc[champion]
    table["interval_coverage"] = np.nan
    table.loc["keyltv", "interval_coverage"] = coverage
    table.insert(0, "origin", origin)
    table["champion"] = table.index == champion
    # The flags as `keyltv score` would set them at the origin: thresholds set on the
    # champion's outputs for these accounts where they reach the precision targets, else
    # learned on the selection holdout, else the config's.
    learned = learn_flag_thresholds(selection, champion, config)
    thresholds, sources = scoring_thresholds(outer, champion, config, learned)
    flags = {**flag_metrics(outer, champion, config, thresholds),
             **{f"threshold_{k}": v for k, v in thresholds.items()}}
    season = season_ratios(log, origin, outer.horizon_days, outer.predictions, champion)
    return OriginResult(origin, champion, table, selection, outer, coverage, flags, season,
                        sources)


def season_ratios(log: TransactionLog, origin: date, horizon_days: int,
                  predictions: pd.DataFrame, champion: str) -> dict[str, float]:
    """Value of the horizon after ``origin`` against the trailing one, three ways.

    ``year_ago``: what the accounts on the books a year earlier did around that day
    (:func:`keyltv.features.accounts.year_ago_ratio`, the comparison behind scoring's
    season note); ``predicted``: the champion's total over the trailing value;
    ``realized``: the holdout's. On a seasonal log the models follow the trailing
    horizon and the realized ratio follows the year before. Empty when the log does not
    reach back a year and a horizon, or a total is not positive.
    """
    year_ago = year_ago_ratio(log, origin, horizon_days)
    trailing = float(predictions["trailing_value"].sum())
    if year_ago is None or trailing <= 0:
        return {}
    return {"year_ago": year_ago,
            "predicted": float(predictions[champion].sum()) / trailing,
            "realized": float(predictions["actual"].sum()) / trailing}


def rolling_origins(last: date, n_origins: int, step_days: int) -> list[date]:
    """``last``, ``last - step``, ... (oldest first)."""
    return sorted(last - timedelta(days=k * step_days) for k in range(n_origins))
