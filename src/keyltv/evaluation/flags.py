"""Flag thresholds learned on a backtest holdout, and how the flags hold up against it.

The flags ``at_risk`` and ``high_potential`` threshold the event scores
(:mod:`keyltv.scoring.rules`). :func:`learn_flag_thresholds` picks, on the selection
backtest, the lowest threshold whose precision among valuable accounts reaches the
config's target with confidence; :func:`scoring_thresholds` gives the thresholds that
scoring would use on a later holdout's accounts, and :func:`flag_metrics` measures
precision and recall of the flags there (``keyltv evaluate``, ``bench-accuracy``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from keyltv.config import Config
from keyltv.evaluation.metrics import best_recall_at_precision
from keyltv.scoring.rules import (
    THRESHOLDED_FLAGS,
    apply_flags,
    flag_pools,
    lowest_reaching_threshold,
    resolve_thresholds,
    valuable_mask,
)

if TYPE_CHECKING:  # its result is only read here, never built
    from keyltv.evaluation.backtest import BacktestResult


def _flag_inputs(result: BacktestResult, champion: str) -> pd.DataFrame:
    """The champion's backtest outputs, as the flag rules read them from a score file."""
    p, events = result.predictions, result.events
    return pd.DataFrame({
        "predicted_value": p[champion], "trailing_value": p["trailing_value"].clip(lower=0),
        "decline_risk": np.where(p["trailing_value"] > 0, events["decline_risk"], 0.0),
        "growth_potential": events["growth_potential"],
        "p_alive": events.get("p_alive", pd.Series(1.0, index=p.index)),
    })


# Flag -> (event it warns of, score it thresholds, Flags field of the threshold,
# Flags field of the precision target).
FLAG_RULES = {flag: (event, *THRESHOLDED_FLAGS[flag])
              for flag, event in (("at_risk", "decline"), ("high_potential", "growth"))}


# The decisions issue's precision goals, for the "best recall at this precision" metric.
GOAL_PRECISION = {"at_risk": 0.6, "high_potential": 0.5}


def learn_flag_thresholds(result: BacktestResult, champion: str, config: Config) -> dict[str, float]:
    """Thresholds that meet the flags' precision targets on a backtest holdout, with confidence.

    For each flag with a target, the accounts that the rule could flag
    (:func:`~keyltv.scoring.rules.flag_pools`) are ranked by score. The event is
    calibrated on the score by isotonic regression, and the threshold is the lowest
    score at which the 95% lower confidence bound (Wilson) of the precision of "flag
    everyone above" still reaches the target
    (:func:`~keyltv.scoring.rules.lowest_reaching_threshold`). Why the bound: a
    threshold that only just reaches the target on one holdout fell to precision
    0.3-0.45 on the next period in the benchmark. Flags whose target is not reached
    with confidence are left out, and so are thresholds that would flag more than
    :data:`~keyltv.scoring.rules.MAX_FLAGGED_SHARE` of the accounts the rule could
    flag. On the CDNOW demo, two thirds of the valuable accounts halve over the 91-day
    selection holdout; the learned threshold was 0.000 and flagged every valuable
    account at risk, where the fixed threshold (an even chance of decline) flags the
    likelier part.

    Scoring prefers a threshold set on the scored accounts themselves
    (:func:`~keyltv.scoring.rules.resolve_thresholds`); this one applies where that
    reaches no target.

    Returns
    -------
    dict
        ``Flags`` field name -> threshold, e.g. ``{"high_potential_growth": 0.36}``.
    """
    from sklearn.isotonic import IsotonicRegression

    if "decline_risk" not in result.events:
        return {}
    scores = _flag_inputs(result, champion)
    pools = flag_pools(scores, config.flags)
    learned = {}
    for flag, (event, score, field_name, target_name) in FLAG_RULES.items():
        target = getattr(config.flags, target_name)
        rows = pools[flag]
        if target is None or not rows.any():
            continue
        s = scores[score].to_numpy()[rows]
        hits = result.events[event].to_numpy()[rows].astype(float)
        # Calibrated P(event | score), non-increasing down the ranking, so the running
        # precision falls monotonically and the crossing is unique.
        chance = IsotonicRegression(out_of_bounds="clip").fit(s, hits).predict(s)
        threshold = lowest_reaching_threshold(s, chance, target)
        if threshold is not None:
            learned[field_name] = threshold
    return learned


def scoring_thresholds(result: BacktestResult, champion: str, config: Config,
                       learned: dict[str, float]) -> tuple[dict[str, float], dict[str, str]]:
    """The thresholds ``keyltv score`` would use on this backtest's accounts, and their sources.

    As in scoring (:func:`~keyltv.scoring.rules.resolve_thresholds`): set on the
    champion's outputs for these accounts, else ``learned``, else the config's. No
    realized event is read.
    """
    if "decline_risk" not in result.events:
        return {}, {}
    flags, sources = resolve_thresholds(config.flags, learned, _flag_inputs(result, champion))
    return {field: getattr(flags, field) for field in sources}, sources


def flag_metrics(result: BacktestResult, champion: str, config: Config,
                 thresholds: dict[str, float] | None = None) -> dict[str, float]:
    """Precision and recall of ``at_risk`` and ``high_potential`` among valuable accounts.

    The flags are the documented rules of :mod:`keyltv.scoring.rules` applied to the
    champion's backtest predictions, with ``thresholds`` (learned elsewhere, see
    :func:`learn_flag_thresholds`) replacing the config's; the truth is the realized
    decline or growth event.
    """
    events = result.events
    if "decline_risk" not in events:
        return {}
    scores = _flag_inputs(result, champion)
    flags = config.flags.model_copy(update=thresholds or {})
    flagged = apply_flags(scores, flags, config.tiers)
    valuable = valuable_mask(scores, config.flags)
    out = {}
    for flag, (event, score, _, _) in FLAG_RULES.items():
        floor = GOAL_PRECISION[flag]
        hit = flagged[flag] & valuable
        truth = events[event] & valuable
        out[f"{flag}_precision"] = float(truth[hit].mean()) if hit.any() else float("nan")
        out[f"{flag}_recall"] = float(hit[truth].mean()) if truth.any() else float("nan")
        out[f"{flag}_flagged"] = int(hit.sum())
        # What the best threshold on the score could reach at the goal's precision.
        out[f"{flag}_best_recall_p{int(floor * 100)}"] = best_recall_at_precision(
            truth[valuable], scores.loc[valuable, score], floor)
    return out
