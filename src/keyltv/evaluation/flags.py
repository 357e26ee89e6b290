"""Flag thresholds learned on a backtest holdout, and how the flags hold up against it.

The flags ``at_risk`` and ``high_potential`` threshold the event scores
(:mod:`keyltv.scoring.rules`). :func:`learn_flag_thresholds` picks, on the selection
backtest, the lowest threshold whose precision among valuable accounts reaches the
config's target with confidence; :func:`flag_metrics` measures precision and recall of
the flags on a later holdout (``keyltv evaluate``, ``bench-accuracy``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from keyltv.config import Config
from keyltv.evaluation.metrics import best_recall_at_precision
from keyltv.scoring.rules import THRESHOLDED_FLAGS, apply_flags, valuable_mask

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


# A learned threshold that flags more than this share of the accounts a rule could flag
# is not kept (see learn_flag_thresholds).
MAX_FLAGGED_SHARE = 0.9

# The decisions issue's precision goals, for the "best recall at this precision" metric.
GOAL_PRECISION = {"at_risk": 0.6, "high_potential": 0.5}


def learn_flag_thresholds(result: BacktestResult, champion: str, config: Config) -> dict[str, float]:
    """Thresholds that meet the flags' precision targets on a backtest holdout, with confidence.

    For each flag with a target, the accounts that the rule could flag (valuable ones
    with trailing value for ``at_risk``, since only they can halve; those predicted
    above their trailing value, counted among the valuable, for ``high_potential``) are
    ranked by score. The event is calibrated on
    the score by isotonic regression, and the threshold is the lowest score at which
    the 95% lower confidence bound (Wilson) of the precision of "flag everyone above"
    still reaches the target. Why the bound: a threshold that only just reaches the
    target on one holdout fell to precision 0.3-0.45 on the next period in the
    benchmark. Flags whose target is not reached with confidence are left out (the
    fixed threshold applies), and so are thresholds that would flag more than
    :data:`MAX_FLAGGED_SHARE` of the accounts the rule could flag: the event is then so
    common that the lowest qualifying threshold sits near zero and tells the accounts
    hardly apart. On the CDNOW demo, two thirds of the valuable accounts halve over the
    91-day selection holdout; the learned threshold was 0.000 and flagged every valuable
    account at risk, where the fixed threshold (an even chance of decline) flags the
    likelier part.

    Returns
    -------
    dict
        ``Flags`` field name -> threshold, e.g. ``{"high_potential_growth": 0.36}``.
    """
    from sklearn.isotonic import IsotonicRegression

    if "decline_risk" not in result.events:
        return {}
    scores = _flag_inputs(result, champion)
    # The flag rules with zero thresholds: who each rule could flag at all.
    no_threshold = config.flags.model_copy(update={rule[2]: 0.0 for rule in FLAG_RULES.values()})
    could_flag = apply_flags(scores, no_threshold, config.tiers)
    valuable = valuable_mask(scores, config.flags)
    learned = {}
    for flag, (event, score, field_name, target_name) in FLAG_RULES.items():
        target = getattr(config.flags, target_name)
        rows = (could_flag[flag] & valuable).to_numpy()
        if event == "decline":  # only accounts with trailing value can halve (event_labels)
            rows = rows & (scores["trailing_value"].to_numpy() > 0)
        if target is None or not rows.any():
            continue
        s = scores[score].to_numpy()[rows]
        hits = result.events[event].to_numpy()[rows].astype(float)
        order = np.argsort(-s, kind="stable")
        # Calibrated P(event | score), non-increasing down the ranking, so the running
        # precision falls monotonically and the crossing is unique.
        p = IsotonicRegression(out_of_bounds="clip").fit(s, hits).predict(s)[order]
        flagged = np.arange(1, len(p) + 1)
        reached = np.flatnonzero(wilson_lower_bound(np.cumsum(p) / flagged, flagged) >= target)
        if len(reached) and reached[-1] + 1 <= MAX_FLAGGED_SHARE * len(p):
            learned[field_name] = float(s[order][reached[-1]])
    return learned


def wilson_lower_bound(share: np.ndarray, n: np.ndarray, z: float = 1.645) -> np.ndarray:
    """One-sided lower confidence bound (95% for ``z=1.645``) of a share seen in ``n`` trials."""
    centre = share + z * z / (2 * n)
    spread = z * np.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n)


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
