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

from keyltv.features.attributes import ATTRIBUTE_PREFIX, DAYS_BEFORE
from keyltv.features.definitions import EWM_DAYS, RHYTHM_DAYS, WINDOWS
from keyltv.scoring.rules import digits_apart

Phrase = Callable[[pd.Series], str | None]
log = logging.getLogger(__name__)

# Per-row TreeSHAP costs 1-3 ms on two cores: explaining the 200,000 key accounts of a
# million-account book would take longer than training. 5,000 per group is far more
# than anyone reads, and keeps reasons under a minute at any size.
MAX_EXPLAINED = 5_000


def _days(days: float) -> str:
    """``1 day``, ``120 days``."""
    return f"{days:.0f} day" + ("" if round(days) == 1 else "s")


def _orders(count: float) -> str:
    """``1 order``, ``12 orders``."""
    return f"{count:.0f} order" + ("" if round(count) == 1 else "s")


def _num(value: object) -> float:
    return float(value) if value is not None and pd.notna(value) else float("nan")


def _ratio_phrase(row: pd.Series) -> str | None:
    ratio = _num(row.get("recency_ratio"))
    if np.isnan(ratio):
        return None
    return f"no order for {_days(_num(row['days_since_last_order']))}, {ratio:.1f}x its usual gap"


def _rhythm_phrase(days: int) -> Phrase:
    """Orders in the last ``days`` against the account's usual rhythm (``rhythm_<days>d``)."""
    def phrase(row: pd.Series) -> str | None:
        rhythm = _num(row.get(f"rhythm_{days}d"))
        if np.isnan(rhythm):
            return None
        return f"orders in the last {days} days at {rhythm:.1f}x its usual rhythm"
    return phrase


def _value_change(row: pd.Series) -> float:
    """Trailing over previous horizon's value, minus 1 (NaN without a previous value).

    From the two sums themselves: the model's ``trend`` is a difference of ln(1 + value),
    which read "up 99%" for a rise of 102%.
    """
    previous, trailing = _num(row.get("previous_value")), _num(row.get("trailing_value"))
    if np.isnan(previous) or np.isnan(trailing) or previous <= 0:
        return float("nan")
    return max(trailing, 0.0) / previous - 1.0


def _trend_phrase(row: pd.Series) -> str | None:
    change = _value_change(row) * 100
    if np.isnan(change):
        return None
    return f"value {'up' if change >= 0 else 'down'} {abs(change):.0f}% on the horizon before"


PHRASES: dict[str, Phrase] = {
    "recency_ratio": _ratio_phrase,
    "days_since_last_order": _ratio_phrase,
    **{f"rhythm_{w}d": _rhythm_phrase(w) for w in RHYTHM_DAYS},
    "trend": _trend_phrase,
    "previous_value": _trend_phrase,
    "trailing_value": lambda r: f"value {_num(r['trailing_value']):,.0f} over the last horizon",
    "value_same_window_last_year":
        lambda r: f"{_num(r['value_same_window_last_year']):,.0f} in the same season last year",
    "orders_total": lambda r: f"{_orders(_num(r['orders_total']))} in {_days(_num(r['tenure_days']))}",
    "frequency": lambda r: f"{_orders(_num(r['orders_total']))} in {_days(_num(r['tenure_days']))}",
    "tenure_days": lambda r: f"customer for {_days(_num(r['tenure_days']))}",
    "avg_order_value": lambda r: f"average order {_num(r['avg_order_value']):,.0f}",
    "gap_cv": lambda r: None if np.isnan(_num(r.get("gap_cv"))) else
        f"order gaps vary by {_num(r['gap_cv']):.0%} of their mean",
    "return_share": lambda r: f"returns {_num(r['return_share']):.0%} of gross value",
    "margin_rate": lambda r: None if np.isnan(_num(r.get("margin_rate"))) else
        f"margin rate {_num(r['margin_rate']):.0%}",
    "active_months_365": lambda r: f"active in {_num(r['active_months_365']):.0f} of the last 12 months",
    "value_total": lambda r: f"value {_num(r['value_total']):,.0f} in {_days(_num(r['tenure_days']))}",
    "repeat_order_value": lambda r: f"average repeat order {_num(r['repeat_order_value']):,.0f}",
    "mean_gap_days": lambda r: None if np.isnan(_num(r.get("mean_gap_days"))) else
        f"an order every {_days(_num(r['mean_gap_days']))} on average",
    "days_since_last_activity":
        lambda r: f"last activity {_days(_num(r['days_since_last_activity']))} ago",
    "ewm_orders_180d": lambda r: f"recent orders weigh {_num(r['ewm_orders_180d']):.1f} "
                                 "(each order fading over 180 days)",
    "prob_value": lambda r: None,  # the probabilistic model's inputs have no words
    "prob_orders": lambda r: None,
    "prob_p_alive": lambda r: None,
    "history_coverage": lambda r: None,
    "T": lambda r: f"first order {_days(_num(r['T']))} ago",
    "recency": lambda r: f"last order {_days(_num(r['recency']))} after its first",
}


def _window_phrase(column: str, text: str) -> Phrase:
    """A windowed sum by its exact name (a suffix test read ..._730d as 30 days)."""
    return lambda row: text.format(_num(row.get(column)))


for _w in WINDOWS:
    PHRASES[f"value_{_w}d"] = _window_phrase(f"value_{_w}d", f"value {{:,.0f}} in the last {_w} days")
    PHRASES[f"orders_{_w}d"] = (lambda row, c=f"orders_{_w}d", w=_w:
                                f"{_orders(_num(row.get(c)))} in the last {w} days")
for _d in EWM_DAYS:
    PHRASES[f"ewm_value_{_d}d"] = _window_phrase(
        f"ewm_value_{_d}d", f"recent value {{:,.0f}} (each day's value fading over {_d} days)")


def _centroid_phrase(column: str, what: str, span: str) -> Phrase:
    """Where in the account's history its value or orders sit (1 = evenly spread)."""
    def phrase(row: pd.Series) -> str | None:
        ratio = _num(row.get(column))
        # One order sits where it sits: its "centroid" is 2.0x the midpoint's age by
        # construction, which read as value weighted to earlier days (audit 28).
        if np.isnan(ratio) or not _num(row.get("orders_total")) >= 2:
            return None
        where = "recent" if ratio < 1 else "earlier"
        return f"{what} weighted to {where} days{span} ({ratio:.2f}x the midpoint's age)"
    return phrase


for _kind, _what in (("value", "value"), ("order", "orders")):
    PHRASES[f"{_kind}_centroid_ratio"] = _centroid_phrase(f"{_kind}_centroid_ratio", _what, "")
    PHRASES[f"{_kind}_centroid_ratio_730d"] = _centroid_phrase(
        f"{_kind}_centroid_ratio_730d", _what, " of the last two years")


# A fact within this of its neutral level points nowhere: "1.0x its usual gap" or "value
# up 0%" is no low base and no peak.
NEUTRAL_BAND = 0.05


def _sign(value: float, level: float) -> int:
    """+1 above ``level``, -1 below, 0 within :data:`NEUTRAL_BAND` of it or unknown."""
    if np.isnan(value) or abs(value - level) <= NEUTRAL_BAND * max(abs(level), 1.0):
        return 0
    return 1 if value > level else -1


# Which way a fact about the account points: +1 a rise of its recent value or orders
# over its own past, -1 a fall (a feature not listed points nowhere).
DIRECTIONS: dict[str, Callable[[pd.Series], int]] = {
    "trend": lambda r: _sign(_value_change(r), 0.0),
    "previous_value": lambda r: _sign(_value_change(r), 0.0),
    **{f"rhythm_{w}d": (lambda r, c=f"rhythm_{w}d": _sign(_num(r.get(c)), 1.0))
       for w in RHYTHM_DAYS},
    "orders_90d": lambda r: _sign(_num(r.get("rhythm_90d")), 1.0),
    # Overdue against its own rhythm is a fall; an order sooner than usual says little.
    "recency_ratio": lambda r: min(0, -_sign(_num(r.get("recency_ratio")), 1.0)),
    "days_since_last_order": lambda r: min(0, -_sign(_num(r.get("recency_ratio")), 1.0)),
    **{f"{kind}_centroid_ratio{span}":
       (lambda r, c=f"{kind}_centroid_ratio{span}": -_sign(_num(r.get(c)), 1.0))
       for kind in ("value", "order") for span in ("", "_730d")},
}

# The decline and growth events compare the next horizon with the last one (see
# ``Events``), so a fall in the last horizon makes growth likelier (a low base) and a
# rise makes decline likelier (a peak). The classifiers learn that; a fact that seems
# to point the other way from its flag says so, or managers read it as a contradiction
# (the audit found "value down 74%" behind 379 of 790 growing accounts).
AGAINST = {"growth": (-1, "a low base to grow from"), "decline": (1, "a peak to fall back from")}


def describe_feature(name: str, row: pd.Series) -> str | None:
    """One phrase for ``name`` quoting ``row``'s values, or None when nothing to say."""
    if name in PHRASES:
        return PHRASES[name](row)
    if name.startswith(ATTRIBUTE_PREFIX):
        value = row.get(name)
        if pd.isna(value):
            return None
        if name.endswith(DAYS_BEFORE):  # a date attribute, as days before as_of
            column = name[len(ATTRIBUTE_PREFIX):-len(DAYS_BEFORE)]
            return (f"{column} {value:,.0f} days ago" if value >= 0
                    else f"{column} in {-value:,.0f} days")
        if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
            value = f"{value:,.0f}" if float(value).is_integer() else f"{value:,.4g}"
        return f"{name[5:]} = {value}"
    return None  # a feature without words (a new one) is left out, not misquoted


def top_reasons(features: pd.DataFrame, contributions: pd.DataFrame, n: int = 3,
                target: str = "value") -> pd.Series:
    """The ``n`` features pushing each row's output up the most, as '; '-joined phrases.

    For the ``decline`` and ``growth`` targets a fact that points the other way from the
    event carries why it pushes towards it (see :data:`AGAINST`), unless the account's
    value moved the event's way over the last horizon: then there is no low base or peak.
    """
    against, why = AGAINST.get(target, (None, ""))
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
        # The base is the value itself: orders at half their rhythm are no low base for an
        # account whose value rose 177% on the horizon before (audit 29).
        base_holds = against is not None and _sign(_value_change(row), 0.0) != -against
        for j in ranked:
            if contrib[j] <= 0 or len(phrases) == n:
                break
            phrase = describe_feature(names[j], row)
            if phrase and base_holds and names[j] in DIRECTIONS \
                    and DIRECTIONS[names[j]](row) == against:
                phrase = f"{phrase} ({why})"
            if phrase and phrase not in phrases:
                phrases.append(phrase)
        out[account] = "; ".join(phrases)
    return pd.Series(out, dtype=object).reindex(features.index)


def explain_flags(bundle: object, features: pd.DataFrame, scored: pd.DataFrame,
                  max_accounts: int = MAX_EXPLAINED, low_margin_rate: float | None = None
                  ) -> pd.Series:
    """Compute ``reasons`` per account.

    At-risk accounts by decline drivers, high-potential ones by growth drivers, other
    key or low-margin accounts by value drivers; empty for the rest, and beyond the
    ``max_accounts`` of highest predicted value in each of those three groups.
    ``low_margin_rate`` (the flag's threshold) sets the digits of a low-margin
    account's profit share, so that 4.96% under a 5% rule does not read "5%".
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
        reasons.loc[ids] = top_reasons(features.loc[ids], contributions,
                                       target=target).to_numpy()
    if low_margin.any() and "predicted_profit" in scored:
        # The flag's own reason first: the drivers above explain value, not margin.
        thin = low_margin.to_numpy(dtype=bool)
        share = scored.loc[thin, "predicted_profit"] / scored.loc[thin, "predicted_value"]
        first = [f"predicted profit only {_percent_below(s, low_margin_rate)} of its "
                 "predicted value" if s >= 0 else
                 f"predicted loss of {-s:.0%} of its predicted value" for s in share]
        rest = reasons[thin]
        reasons[thin] = [f + ("; " + r if r else "") for f, r in zip(first, rest, strict=True)]
    return reasons


def _percent_below(share: float, limit: float | None) -> str:
    """``share`` as a percentage with the decimals that tell it from ``limit``'s."""
    if limit is None:
        return f"{share:.0%}"
    digits = digits_apart(share * 100, limit * 100, least=0, most=4)
    return f"{share * 100:.{digits}f}%"
