"""Reasons in words: an account's top drivers, from LightGBM's per-row contributions.

For each flagged account the model behind the flag is explained (decline classifier
for ``at_risk``, growth classifier for ``high_potential``, the value model otherwise);
the features that push that output up the most are turned into short phrases that
quote the account's own numbers, e.g. "no order for 120 days, 3.0x its usual gap".
Unflagged accounts get no reasons: explaining a million quiet accounts costs time and
nobody reads them. For the same reason each group explains at most
:data:`MAX_EXPLAINED` accounts, the most valuable first (the cut is logged).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import pandas as pd

Phrase = Callable[[pd.Series], str | None]
log = logging.getLogger(__name__)

# Per-row TreeSHAP costs 1-3 ms on two cores: explaining the 200,000 key accounts of a
# million-account book would take longer than training. 5,000 per group is far more
# than anyone reads, and keeps reasons under a minute at any size.
MAX_EXPLAINED = 5_000


def _num(value: object) -> float:
    return float(value) if value is not None and pd.notna(value) else float("nan")


def _ratio_phrase(row: pd.Series) -> str | None:
    ratio = _num(row.get("recency_ratio"))
    if np.isnan(ratio):
        return None
    return f"no order for {_num(row['days_since_last_order']):.0f} days, {ratio:.1f}x its usual gap"


def _rhythm_phrase(row: pd.Series) -> str | None:
    rhythm = _num(row.get("rhythm_90d"))
    if np.isnan(rhythm):
        return None
    return f"orders in the last 90 days at {rhythm:.1f}x its usual rhythm"


def _trend_phrase(row: pd.Series) -> str | None:
    trend = _num(row.get("trend"))
    if np.isnan(trend) or _num(row.get("previous_value")) <= 0:
        return None
    change = np.expm1(trend) * 100
    return f"value {'up' if change >= 0 else 'down'} {abs(change):.0f}% on the horizon before"


PHRASES: dict[str, Phrase] = {
    "recency_ratio": _ratio_phrase,
    "days_since_last_order": _ratio_phrase,
    "rhythm_90d": _rhythm_phrase,
    "orders_90d": _rhythm_phrase,
    "trend": _trend_phrase,
    "previous_value": _trend_phrase,
    "trailing_value": lambda r: f"value {_num(r['trailing_value']):,.0f} over the last horizon",
    "value_same_window_last_year":
        lambda r: f"{_num(r['value_same_window_last_year']):,.0f} in the same season last year",
    "orders_total": lambda r: f"{_num(r['orders_total']):.0f} orders in {_num(r['tenure_days']):.0f} days",
    "frequency": lambda r: f"{_num(r['orders_total']):.0f} orders in {_num(r['tenure_days']):.0f} days",
    "tenure_days": lambda r: f"customer for {_num(r['tenure_days']):.0f} days",
    "avg_order_value": lambda r: f"average order {_num(r['avg_order_value']):,.0f}",
    "gap_cv": lambda r: None if np.isnan(_num(r.get("gap_cv"))) else
        f"order gaps vary by {_num(r['gap_cv']):.0%} of their mean",
    "return_share": lambda r: f"returns {_num(r['return_share']):.0%} of gross value",
    "margin_rate": lambda r: None if np.isnan(_num(r.get("margin_rate"))) else
        f"margin rate {_num(r['margin_rate']):.0%}",
    "active_months_365": lambda r: f"active in {_num(r['active_months_365']):.0f} of the last 12 months",
    "prob_p_alive": lambda r: None,
}


def describe_feature(name: str, row: pd.Series) -> str | None:
    """One phrase for ``name`` quoting ``row``'s values, or None when nothing to say."""
    if name in PHRASES:
        return PHRASES[name](row)
    if name.startswith("attr_"):
        value = row.get(name)
        return None if pd.isna(value) else f"{name[5:]} = {value}"
    for window in ("30d", "90d", "180d", "365d"):
        if name.endswith(window):
            kind = "value" if name.startswith("value") else "orders"
            amount = _num(row.get(name))
            return f"{kind} in the last {window[:-1]} days: {amount:,.0f}"
    return None


def top_reasons(features: pd.DataFrame, contributions: pd.DataFrame, n: int = 3) -> pd.Series:
    """The ``n`` features pushing each row's output up the most, as '; '-joined phrases."""
    drivers = contributions.drop(columns="bias", errors="ignore")
    names = list(drivers.columns)
    values = drivers.to_numpy(dtype=float)
    # Each row's features by falling contribution, sorted as Series.sort_values(ascending=
    # False) would (same ties), for all rows at once; rows are plain dicts: pandas rows
    # cost more than the phrases.
    width = values.shape[1]
    order = (width - 1 - values[:, ::-1].argsort(axis=1, kind="quicksort"))[:, ::-1]
    rows = features.loc[drivers.index].to_dict("records")
    out = {}
    for account, row, contrib, ranked in zip(drivers.index, rows, values, order, strict=True):
        if np.isnan(contrib).any():  # NaNs go last in sort_values
            ranked = pd.Series(contrib).sort_values(ascending=False).index
        phrases: list[str] = []
        for j in ranked:
            if contrib[j] <= 0 or len(phrases) == n:
                break
            phrase = describe_feature(names[j], row)
            if phrase and phrase not in phrases:
                phrases.append(phrase)
        out[account] = "; ".join(phrases)
    return pd.Series(out, dtype=object).reindex(features.index)


def explain_flags(bundle: object, features: pd.DataFrame, scored: pd.DataFrame,
                  max_accounts: int = MAX_EXPLAINED) -> pd.Series:
    """Compute ``reasons`` per account.

    At-risk accounts by decline drivers, high-potential ones by growth drivers, other
    key or low-margin accounts by value drivers; empty for the rest, and beyond the
    ``max_accounts`` of highest predicted value in each of those three groups.
    """
    reasons = pd.Series("", index=scored.index, dtype=object)
    low_margin = scored.get("low_margin_key", pd.Series(False, index=scored.index))
    groups = [
        ("decline", scored["at_risk"]),
        ("growth", scored["high_potential"] & ~scored["at_risk"]),
        ("value", (scored["key_account"] | low_margin) & ~scored["at_risk"]
         & ~scored["high_potential"]),
    ]
    for target, mask in groups:
        ids = scored.index[mask.to_numpy()]
        if len(ids) == 0:
            continue
        if len(ids) > max_accounts:
            log.info("reasons for the %d most valuable of %d accounts explained by %s "
                     "(MAX_EXPLAINED)", max_accounts, len(ids), target)
            ids = scored.loc[ids, "predicted_value"].nlargest(max_accounts).index
        contributions = bundle.explain(features.loc[ids], target)
        if contributions is None:
            continue
        reasons.loc[ids] = top_reasons(features.loc[ids], contributions).to_numpy()
    return reasons
