"""Documented decision rules over model outputs. Thresholds come from ``Config.flags``.

Tier (A/B/C/D)
    Accounts ranked by predicted profit when margins exist, else predicted value; by
    share of accounts (default 20/30/30/20, the 80/20 pyramid) or by cumulative share of
    the predicted total (``tiers.method = cumulative_value``). With a comparable earlier
    run, an account near a cut whose value barely changed stays in its earlier,
    neighbouring tier (``tiers.hysteresis``).
valuable
    In the top ``flags.valuable_share`` of accounts by the larger of trailing and
    predicted value: worth someone's attention today or tomorrow.
key_account
    Tier A.
at_risk
    Valuable and ``decline_risk >= flags.at_risk_decline``.
high_potential
    ``growth_potential >= flags.high_potential_growth`` and predicted value above the
    trailing value.
thresholds of at_risk and high_potential
    With a precision target (``flags.at_risk_precision``, ``flags.high_potential_precision``),
    set on the accounts being scored: the lowest score at which the flagged valuable
    accounts' mean score, read as their chance of the event, reaches the target with
    95% confidence (:func:`resolve_thresholds`); else the threshold learned in training,
    else the config's.
low_margin_key
    Valuable, but the predicted profit share of value is below ``flags.low_margin_rate``
    ("false key account": volume without profit). Only with margins.
segment
    First rule that holds: ``at_risk``, ``sleeping`` (P(alive) below
    ``flags.sleeping_p_alive``), ``key`` (key account), ``growing`` (high potential),
    ``cultivate`` (tier B or C), else ``ordinary``. Sleeping comes before key: a tier A
    account that the model thinks has probably left (on CDNOW, about 80 of the demo's
    key segment, P(alive) down to 0.00002) needs waking up, not account care; it keeps
    ``key_account``. (It cannot be ``at_risk`` when it bought nothing over the last
    horizon: with no trailing value there is nothing left to decline.)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from keyltv.config import Flags, Tiers

TIER_ORDER = ("A", "B", "C", "D")
SEGMENTS = ("at_risk", "sleeping", "key", "growing", "cultivate", "ordinary")
# Flags that threshold a model score: flag -> (score, ``Flags`` field of the threshold,
# ``Flags`` field of the precision target that a learned threshold must meet).
THRESHOLDED_FLAGS = {
    "at_risk": ("decline_risk", "at_risk_decline", "at_risk_precision"),
    "high_potential": ("growth_potential", "high_potential_growth", "high_potential_precision"),
}


# The band holds an account only while its own value changed by at most this share
# since the earlier run. On CDNOW (1998-07-01 against 1998-06-01) the band alone held 31
# accounts whose value moved by more than 25%; with this cap, tier moves of accounts that
# bought nothing fell from 1,541 to 343 and those of accounts that bought stayed at 417.
MAX_HELD_CHANGE = 0.2


def assign_tiers(value: pd.Series, tiers: Tiers, previous: pd.Series | None = None,
                 previous_value: pd.Series | None = None) -> pd.Series:
    """A/B/C/D per account from a value to rank by (ties broken by index, stable).

    With an earlier run's tiers (``previous``) and ranking values (``previous_value``),
    an account that would move to a neighbouring tier stays where it was while its
    value lies within ``tiers.hysteresis`` of the cut between the two and changed by at
    most :data:`MAX_HELD_CHANGE` since (see :func:`hold_near_cuts`).
    """
    result = _ranked_tiers(value, tiers)
    if previous is None or previous_value is None or tiers.hysteresis == 0:
        return result
    return hold_near_cuts(value, result, previous.reindex(value.index),
                          previous_value.reindex(value.index), tiers.hysteresis)


def hold_near_cuts(value: pd.Series, tier: pd.Series, previous: pd.Series,
                   previous_value: pd.Series, band: float) -> pd.Series:
    """Keep an account's previous tier when it barely moved across a cut it lies near.

    The cut between two tiers is the midpoint of the lower value in the upper tier and
    the higher in the lower tier. An account that crossed it by one tier is held when
    its value lies within ``band`` x |cut| of the cut and changed by at most
    :data:`MAX_HELD_CHANGE` of its earlier value: its neighbours moved more than it
    did. This is the tolerance band of ABC re-classification: without it, near-tied
    accounts swap tiers every period and real moves drown among them. A move of two
    tiers, or of a value that rose or fell by more (on CDNOW one rose from 1.47 to 16.18,
    just across the A/B cut of 16.16), stands. The tier shares then drift a little from
    the configured ones.
    """
    out = tier.copy()
    steady = (value - previous_value).abs() <= MAX_HELD_CHANGE * previous_value.abs()
    for upper, lower in zip(TIER_ORDER[:-1], TIER_ORDER[1:], strict=True):
        above, below = value[tier == upper], value[tier == lower]
        if above.empty or below.empty:
            continue
        cut = (above.min() + below.max()) / 2
        near = ((value - cut).abs() <= band * abs(cut)) & steady
        crossed = ((previous == upper) & (tier == lower)) | ((previous == lower) & (tier == upper))
        held = near & crossed
        out[held] = previous[held]
    return out


def _ranked_tiers(value: pd.Series, tiers: Tiers) -> pd.Series:
    """A/B/C/D by rank alone (see :func:`assign_tiers`)."""
    order = value.sort_index().sort_values(ascending=False, kind="stable")
    n = len(order)
    if tiers.method == "share_of_accounts":
        edges = np.cumsum(tiers.shares)
        # Share of accounts ranked above each one: the top account is always in A.
        position = np.arange(n) / max(n, 1)
        labels = np.searchsorted(edges, position + 1e-12, side="left")
    else:
        total = order.clip(lower=0).sum()
        share = order.clip(lower=0).cumsum() / total if total > 0 else pd.Series(1.0, index=order.index)
        # The account that crosses a cut still belongs to the higher tier.
        previous = share.shift(fill_value=0.0).to_numpy()
        labels = np.searchsorted(np.asarray(tiers.value_cuts), previous + 1e-12, side="left")
    result = pd.Series(np.asarray(TIER_ORDER)[np.minimum(labels, 3)], index=order.index)
    return result.reindex(value.index)


def top_share_mask(value: pd.Series, share: float) -> pd.Series:
    """True for the top ``share`` of accounts by ``value`` (at least one account)."""
    k = max(1, int(np.ceil(share * len(value))))
    ranked = value.sort_index().sort_values(ascending=False, kind="stable")
    return pd.Series(value.index.isin(ranked.index[:k]), index=value.index)


def valuable_mask(scores: pd.DataFrame, flags: Flags) -> pd.Series:
    """The ``valuable`` rule: top ``flags.valuable_share`` by max(trailing, predicted value)."""
    return top_share_mask(np.maximum(scores["trailing_value"], scores["predicted_value"]),
                          flags.valuable_share)


# A threshold that would flag more than this share of the accounts a rule could flag is
# not used (see lowest_reaching_threshold).
MAX_FLAGGED_SHARE = 0.9

# Where a flag's threshold came from, as messages and the scoring run name it.
EXPECTED, LEARNED, CONFIGURED = "expected precision", "learned in training", "the config"


def flag_pools(scores: pd.DataFrame, flags: Flags) -> dict[str, np.ndarray]:
    """Per thresholded flag, the valuable accounts its rule could mark at some threshold.

    ``at_risk``: valuable accounts with trailing value (only they can halve);
    ``high_potential``: valuable accounts predicted above their trailing value. Precision
    targets are measured among these.
    """
    valuable = valuable_mask(scores, flags).to_numpy()
    trailing = scores["trailing_value"].to_numpy()
    return {"at_risk": valuable & (trailing > 0),
            "high_potential": valuable & (scores["predicted_value"].to_numpy() > trailing)}


def wilson_lower_bound(share: np.ndarray, n: np.ndarray, z: float = 1.645) -> np.ndarray:
    """One-sided lower confidence bound (95% for ``z=1.645``) of a share seen in ``n`` trials."""
    centre = share + z * z / (2 * n)
    spread = z * np.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n)


def lowest_reaching_threshold(scores: np.ndarray, chance: np.ndarray, target: float
                              ) -> float | None:
    """Lowest score at which "flag every account at or above it" meets a precision target.

    ``chance`` is each account's probability of the event (paired with ``scores``, not
    increasing as the score falls). The flagged group's precision is the mean chance of
    its accounts; the threshold is the lowest score at which the 95% Wilson lower bound
    of that mean, over as many accounts as are flagged, still reaches ``target``. None
    when no threshold does, or when the lowest one would flag more than
    :data:`MAX_FLAGGED_SHARE` of the accounts: the event is then so common that the
    threshold sits near zero and tells the accounts hardly apart.
    """
    if len(scores) == 0:
        return None
    scores = np.asarray(scores, dtype=float)
    order = np.argsort(-scores, kind="stable")
    s, p = scores[order], np.asarray(chance, dtype=float)[order]
    flagged = np.arange(1, len(p) + 1)
    # A threshold flags every account tied at it: only the last of a tie can end a group.
    ends = np.append(s[:-1] > s[1:], True)
    reached = np.flatnonzero(ends & (wilson_lower_bound(np.cumsum(p) / flagged, flagged)
                                     >= target))
    if not len(reached) or reached[-1] + 1 > MAX_FLAGGED_SHARE * len(p):
        return None
    return float(s[reached[-1]])


def expected_precision_thresholds(scores: pd.DataFrame, flags: Flags) -> dict[str, float]:
    """Thresholds set on the scored accounts themselves, from the scores as probabilities.

    For each flag with a precision target, among the accounts its rule could mark
    (:func:`flag_pools`): the lowest score at which the flagged group's expected
    precision, the mean of its scores, reaches the target with 95% confidence
    (:func:`lowest_reaching_threshold`). The event classifiers' scores are probabilities
    of the event over the horizon, fitted on that horizon's events. A threshold learned
    on the selection backtest was fitted on half a horizon's events, which happen more
    often by chance, and flagged too many accounts on growing books (stop 24, ad hoc, 27
    simulator origins: ``high_potential`` precision 0.30-0.42 on ``growth_heavy``; this
    rule met precision 0.5 at recall 0.3 at all 27, the learned threshold at 18).

    Returns
    -------
    dict
        ``Flags`` field -> threshold, for the flags where one reaches the target.
    """
    out = {}
    pools = flag_pools(scores, flags)
    for flag, (score, field, target_field) in THRESHOLDED_FLAGS.items():
        target = getattr(flags, target_field)
        if target is None:
            continue
        s = scores[score].to_numpy(dtype=float)[pools[flag]]
        threshold = lowest_reaching_threshold(s, s, target)
        if threshold is not None:
            out[field] = threshold
    return out


def precision_targets(flags: Flags) -> dict[str, float]:
    """The precision target of each thresholded flag that has one (threshold field -> target)."""
    return {field: getattr(flags, target) for _, field, target in THRESHOLDED_FLAGS.values()
            if getattr(flags, target) is not None}


def resolve_thresholds(flags: Flags, learned: dict[str, float], scores: pd.DataFrame
                       ) -> tuple[Flags, dict[str, str]]:
    """The thresholds a scoring uses, and where each came from.

    For a flag with a precision target: the threshold of
    :func:`expected_precision_thresholds` on ``scores`` (the model outputs of the
    accounts being scored) where one reaches the target; else the one ``learned`` in
    training; else the config's. Without a target, always the config's.

    Returns
    -------
    flags : Flags
        ``flags`` with the thresholds replaced.
    sources : dict
        ``Flags`` threshold field -> :data:`EXPECTED`, :data:`LEARNED` or :data:`CONFIGURED`.
    """
    expected = expected_precision_thresholds(scores, flags) if len(scores) else {}
    update, sources = {}, {}
    for _, field, target_field in THRESHOLDED_FLAGS.values():
        sources[field] = CONFIGURED
        if getattr(flags, target_field) is None:
            continue
        if field in expected:
            update[field], sources[field] = expected[field], EXPECTED
        elif field in learned:
            update[field], sources[field] = float(learned[field]), LEARNED
    return flags.model_copy(update=update), sources


def tier_basis(scores: pd.DataFrame) -> pd.Series:
    """What tiers rank: predicted profit when the scores have it, else predicted value."""
    return scores["predicted_profit"] if "predicted_profit" in scores else scores["predicted_value"]


def apply_flags(scores: pd.DataFrame, flags: Flags, tiers: Tiers,
                previous: pd.Series | None = None, previous_value: pd.Series | None = None
                ) -> pd.DataFrame:
    """Add ``tier``, flags and ``segment`` to a frame of model outputs.

    ``previous`` and ``previous_value`` (an earlier run's tiers and ranking values,
    comparable with these) keep accounts that barely moved near a cut in their tier
    (see :func:`assign_tiers`).
    """
    out = scores.copy()
    out["tier"] = assign_tiers(tier_basis(out), tiers, previous, previous_value)
    valuable = valuable_mask(out, flags)
    out["key_account"] = out["tier"] == "A"
    out["at_risk"] = valuable & (out["decline_risk"] >= flags.at_risk_decline)
    out["high_potential"] = (out["growth_potential"] >= flags.high_potential_growth) & (
        out["predicted_value"] > out["trailing_value"]
    )
    if "predicted_profit" in out:
        margin_share = out["predicted_profit"] / out["predicted_value"].where(out["predicted_value"] > 0)
        out["low_margin_key"] = valuable & (margin_share.fillna(0.0) < flags.low_margin_rate)
    conditions = [  # in the order of SEGMENTS
        out["at_risk"], out["p_alive"] < flags.sleeping_p_alive, out["key_account"],
        out["high_potential"], out["tier"].isin(["B", "C"]),
    ]
    out["segment"] = np.select(conditions, SEGMENTS[:-1], default=SEGMENTS[-1])
    return out


def silent_flags(scores: pd.DataFrame, flags: Flags) -> list[str]:
    """Why a thresholded flag marked no account, in words (one line per silent flag).

    A threshold learned in training (or set in the config) can lie above every score of
    a later period; an empty at-risk list then reads like good news. Says nothing when
    a flag marked at least one account, or when there is no account at all.
    """
    if scores.empty:
        return []
    lines = []
    valuable = valuable_mask(scores, flags)
    for flag, (score, field, _) in THRESHOLDED_FLAGS.items():
        if flag not in scores or scores[flag].any():
            continue
        threshold = getattr(flags, field)
        among = scores[score][valuable] if flag == "at_risk" else scores[score]
        who = "valuable account" if flag == "at_risk" else "account"
        if among.empty:
            lines.append(f"{flag}: no account is valuable enough to be flagged")
        elif among.max() < threshold:
            digits = digits_apart(threshold, float(among.max()))
            lines.append(f"{flag}: no {who} reached {score} >= {threshold:.{digits}f} (the "
                         f"highest is {among.max():.{digits}f}), so none is flagged")
        else:  # high potential also needs a predicted rise over the trailing value
            lines.append(f"{flag}: the accounts with {score} >= {threshold:.3f} are not "
                         "predicted above their trailing value, so none is flagged")
    return lines


# A flag that marks more than this share of the accounts it may flag is no short list.
CROWDED_SHARE = 0.5


def crowded_flags(scores: pd.DataFrame, flags: Flags, sources: dict[str, str] | None = None
                  ) -> list[str]:
    """Why a thresholded flag that marks most of the accounts it may flag says little.

    ``at_risk`` may flag the valuable accounts, ``high_potential`` every account. When
    the event is that common (a book where most customers lapse within a horizon, such
    as CDNOW, where the fixed 0.5 threshold marked 84% of the valuable accounts), the
    flag is a ranking, not a call list. ``sources`` (from :func:`resolve_thresholds`)
    says where each threshold came from, for the line; the config when not given.
    """
    if scores.empty:
        return []
    lines = []
    valuable = valuable_mask(scores, flags)
    for flag, (score, field, _) in THRESHOLDED_FLAGS.items():
        if flag not in scores:
            continue
        pool = valuable if flag == "at_risk" else pd.Series(True, index=scores.index)
        marked, size = int((scores[flag] & pool).sum()), int(pool.sum())
        if size == 0 or marked <= CROWDED_SHARE * size:
            continue
        who = "valuable accounts" if flag == "at_risk" else "accounts"
        source = (sources or {}).get(field, CONFIGURED)
        if source == CONFIGURED:
            source = f"flags.{field} in the config"
        elif source == EXPECTED:
            target = getattr(flags, THRESHOLDED_FLAGS[flag][2])
            source = f"set for an expected precision of {target} among the valuable"
        threshold = getattr(flags, field)
        exact = f"{threshold:.3f}" if float(f"{threshold:.3f}") == threshold else repr(threshold)
        lines.append(f"{flag}: marks {marked:,} of the {size:,} {who} ({marked / size:.0%}) "
                     f"at {score} >= {exact} ({source}): too many to "
                     f"call; work them by {score}, highest first")
    return lines


def digits_apart(a: float, b: float, least: int = 3, most: int = 8) -> int:
    """Decimals that tell ``a`` from ``b`` when printed (0.466 and 0.466 are not apart)."""
    digits = least
    while digits < most and f"{a:.{digits}f}" == f"{b:.{digits}f}":
        digits += 1
    return digits


def tier_rule(tiers: Tiers) -> str:
    """The tier rule in words, as score files carry it: ``share_of_accounts 0.2/0.3/0.3``.

    Tiers of two runs compare only under one rule: an earlier file tiered by cumulative
    value and read as if tiered by share of accounts reported 412 moves that the config
    alone made (audit 29).
    """
    cuts = tiers.shares if tiers.method == "share_of_accounts" else tiers.value_cuts
    return f"{tiers.method} " + "/".join(f"{c:g}" for c in cuts)


def tier_migrations(current: pd.Series, previous: pd.Series) -> pd.DataFrame:
    """``previous_tier`` and ``tier_change`` (up, down, same, new) per current account."""
    prev = previous.reindex(current.index)
    rank = {t: i for i, t in enumerate(TIER_ORDER)}
    now_rank = current.map(rank)
    prev_rank = prev.map(rank)
    change = np.select(
        [prev.isna(), now_rank < prev_rank, now_rank > prev_rank],
        ["new", "up", "down"], default="same",
    )
    return pd.DataFrame({"previous_tier": prev, "tier_change": change}, index=current.index)
