"""A one-file HTML review of a score table, for the key-account team.

The page is self-contained: inline CSS, plots embedded as base64 PNG, no script and no
external URL, so it can be mailed, archived next to the score file or logged to MLflow
and still open years later. Every string from the data (customer ids above all) is
HTML-escaped. Plots are drawn on bare :class:`matplotlib.figure.Figure` objects, never
through pyplot, so rendering a report leaves no open figure and needs no backend.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Mapping, Sequence
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from keyltv.data.outputs import write_text
from keyltv.evaluation.plots import plot_pareto, plot_segment_counts, plot_tier_counts
from keyltv.scoring.rules import SEGMENTS, THRESHOLDED_FLAGS, TIER_ORDER, tier_basis

REQUIRED_COLUMNS = ("customer_id", "predicted_value", "tier", "segment", "key_account",
                    "at_risk", "high_potential")
# The summary's row per flag column.
FLAG_LABELS = {"key_account": "key accounts", "at_risk": "at-risk accounts",
               "high_potential": "high-potential accounts",
               "low_margin_key": "low-margin valuable accounts"}
# Columns shown in account tables, when the score table has them.
ACCOUNT_COLUMNS = ("customer_id", "tier", "segment", "predicted_value", "predicted_value_low",
                   "predicted_value_high", "predicted_profit", "trailing_value", "p_alive",
                   "decline_risk", "growth_potential")
PROBABILITY_COLUMNS = ("p_alive", "decline_risk", "growth_potential")

# Scoped under .keyltv-report so the page can also be shown inside a notebook.
_CSS = """
.keyltv-report { font-family: system-ui, sans-serif; color: #222; max-width: 1100px;
  margin: 0 auto; padding: 1em; }
.keyltv-report h1 { font-size: 1.6em; margin-bottom: 0.2em; }
.keyltv-report h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; margin-top: 1.6em; }
.keyltv-report table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
.keyltv-report th, .keyltv-report td { border: 1px solid #ddd; padding: 3px 8px; }
.keyltv-report th { background: #f3f3f3; text-align: left; }
.keyltv-report td.num { text-align: right; font-variant-numeric: tabular-nums; }
.keyltv-report img { max-width: 100%; margin: 0.3em 1em 0.3em 0; vertical-align: top; }
.keyltv-report .note { color: #666; font-size: 0.85em; }
"""


def render_report(scores: pd.DataFrame, *, title: str, notes: Mapping[str, int] | None = None,
                  warnings: Sequence[str] = (), top_n: int = 25,
                  previous_not_scored: Mapping[str, int] | None = None,
                  thresholds: Mapping[str, tuple[float, str]] | None = None) -> str:
    """Render a score table as one self-contained HTML page.

    Parameters
    ----------
    scores : pandas.DataFrame
        A score table (:data:`keyltv.scoring.score.SCORE_COLUMNS`). ``predicted_profit``,
        ``low_margin_key``, ``previous_tier``/``tier_change`` and a ``reasons`` column
        are optional; their sections appear only when present.
    title : str
        Page title (escaped).
    notes : mapping of str to int, optional
        Counted input handlings (return lines, duplicates, ...), shown as a table.
    warnings : sequence of str, optional
        What the reader should know first (a flag that marked no account, an old
        model), shown under the title.
    top_n : int, default 25
        Rows per account table.
    previous_not_scored : mapping of str to int, optional
        Accounts of the earlier score file not scored now, per their earlier tier; a
        column of the migration table.
    thresholds : mapping, optional
        ``Flags`` threshold field -> (threshold, where it came from), as the score job
        resolved them; said under the at-risk and high-potential lists.

    Returns
    -------
    str
        The HTML document.

    Raises
    ------
    ValueError
        If a required column is missing; the message names it.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in scores.columns]
    if missing:
        raise ValueError(f"score table: column {missing[0]!r} is missing; "
                         f"required: {', '.join(REQUIRED_COLUMNS)}")
    ranked = _ranked(scores)
    sections = [
        *([_section("Read first", "".join(_paragraph(w) for w in warnings))] if warnings else []),
        _section("Summary", _summary_table(scores)),
        # What the tiers rank (profit with margins), so that its top 20% is tier A.
        _section(f"{ranked.capitalize()} concentration",
                 _png(lambda ax: plot_pareto(tier_basis(scores), ax, ranked))
                 + _paragraph(f"Accounts sorted by predicted {ranked} over the horizon.")),
        _section("Tiers and segments", _tiers_and_segments(scores)),
        *_account_sections(scores, top_n, thresholds or {}, ranked),
    ]
    if "tier_change" in scores.columns:
        sections.append(_section("Tier migrations", _migrations(scores, previous_not_scored)))
    sections.append(_section("Input notes", _notes_table(notes)))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<div class=\"keyltv-report\">\n<h1>{escape(title)}</h1>\n"
        + "\n".join(sections) + "\n</div>\n</body>\n</html>\n"
    )


def _account_sections(scores: pd.DataFrame, top_n: int,
                      thresholds: Mapping[str, tuple[float, str]], ranked: str) -> list[str]:
    """Build the account lists: key, at risk, high potential, low-margin key (with margins).

    ``ranked``: what the tiers rank (:func:`_ranked`), the key list's order.
    """
    reasons = ("reasons",) if "reasons" in scores.columns else ()

    def rule(flag: str) -> str:
        # Which score the list cuts at, and why there: a reader can tell a list set for
        # a precision target from a fixed cut.
        score, field, _ = THRESHOLDED_FLAGS[flag]
        if field not in thresholds:
            return ""
        value, source = thresholds[field]
        return f" Flagged at {score} >= {value:.3f} ({source})."

    sections = [
        # In the tiers' order: with margins, a large but thin-margin account is no
        # top key account (audit 29: 10 of the 25 shown by value were low-margin).
        _account_section("Top key accounts", scores[scores["key_account"].astype(bool)],
                         f"predicted_{ranked}", top_n,
                         f"Tier A, by predicted {ranked}.", extra=reasons),
        # Sorted by trailing value: what the account bought last horizon is what can be lost.
        _account_section("At-risk accounts", scores[scores["at_risk"].astype(bool)],
                         "trailing_value", top_n,
                         "Valuable accounts with a high decline risk, by trailing value."
                         + rule("at_risk"),
                         extra=reasons),
        _account_section("High-potential accounts", scores[scores["high_potential"].astype(bool)],
                         "growth_potential", top_n,
                         "Likely to grow beyond their trailing value, by growth potential."
                         + rule("high_potential"),
                         extra=reasons),
    ]
    if "low_margin_key" in scores.columns:
        sections.append(_account_section(
            "Low-margin valuable accounts (false key accounts)",
            scores[scores["low_margin_key"].astype(bool)], "predicted_value", top_n,
            "Valuable accounts (tier A or not) whose predicted profit is a thin share of "
            "their value.",
            extra=reasons))
    return sections


def _ranked(scores: pd.DataFrame) -> str:
    """What the tiers rank, in words: ``profit`` with margins, else ``value``."""
    return "profit" if "predicted_profit" in scores.columns else "value"


def _account_section(heading: str, rows: pd.DataFrame, sort_by: str, top_n: int,
                     caption: str, extra: tuple[str, ...] = ()) -> str:
    """One account list: the count, then the ``top_n`` rows by ``sort_by`` (descending)."""
    if sort_by not in rows.columns:
        sort_by = "predicted_value"
    shown = rows.sort_values([sort_by, "customer_id"], ascending=[False, True]).head(top_n)
    columns = [c for c in (*ACCOUNT_COLUMNS, *extra) if c in rows.columns]
    count = f"{len(rows):,} account(s)" + (f"; the top {len(shown)} shown." if len(rows) else ".")
    return _section(heading, _paragraph(f"{caption} {count}")
                    + (_table(shown[columns]) if len(shown) else ""))


def _summary_table(scores: pd.DataFrame) -> str:
    """Run facts, book totals and flag counts as a two-column table."""
    rows: dict[str, object] = {
        "as of": _distinct(scores, "as_of"),
        "horizon (days)": _distinct(scores, "horizon_days"),
        "model version": _distinct(scores, "model_version"),
        "accounts": len(scores),
        "total predicted value": float(scores["predicted_value"].sum()),
    }
    for column, label in (("predicted_profit", "total predicted profit"),
                          ("trailing_value", "total trailing value")):
        if column in scores.columns:
            rows[label] = float(scores[column].sum())
    for flag, label in FLAG_LABELS.items():
        if flag in scores.columns:
            rows[label] = int(scores[flag].astype(bool).sum())
    frame = pd.DataFrame({"item": list(rows), "value": list(rows.values())})
    return _table(frame, header=False)


def _distinct(scores: pd.DataFrame, column: str) -> str:
    """Distinct values of a run-level column, comma-separated ('' when absent)."""
    if column not in scores.columns:
        return ""
    return ", ".join(map(str, pd.unique(scores[column].dropna())))


def _tiers_and_segments(scores: pd.DataFrame) -> str:
    """Tier and segment bar charts, with the counts as a table for reading and copying."""
    counts = pd.crosstab(scores["segment"], scores["tier"])
    others = sorted(str(s) for s in counts.index if s not in SEGMENTS)
    counts = counts.reindex(index=[*SEGMENTS, *others], columns=list(TIER_ORDER), fill_value=0)
    counts["all tiers"] = counts.sum(axis=1)
    return (_png(lambda ax: plot_tier_counts(scores["tier"], ax))
            + _png(lambda ax: plot_segment_counts(scores["segment"], ax))
            + _table(counts.rename_axis("segment").reset_index()))


def _migrations(scores: pd.DataFrame, not_scored: Mapping[str, int] | None = None) -> str:
    """Previous tier x current tier counts, accounts new since the last run in row ``new``.

    ``not_scored`` counts, per previous tier, the accounts of the earlier file that are
    not scored now (no line before ``--as-of``): column ``not scored now``, so that each
    row adds up to the earlier file's accounts of that tier.
    """
    previous = (scores["previous_tier"] if "previous_tier" in scores.columns
                else pd.Series(np.nan, index=scores.index)).astype(object)
    previous = previous.where(previous.notna(), "new")
    table = pd.crosstab(previous.rename("previous tier"), scores["tier"].rename("tier"))
    gone = not_scored or {}
    order = [t for t in (*TIER_ORDER, "new") if t in table.index or gone.get(t)]
    table = table.reindex(index=order, columns=list(TIER_ORDER), fill_value=0)
    if gone:
        table["not scored now"] = [int(gone.get(t, 0)) for t in table.index]
    changes = scores["tier_change"].value_counts().reindex(
        ["up", "down", "same", "new"], fill_value=0)
    summary = ", ".join(f"{k}: {v:,}" for k, v in changes.items())
    return _paragraph(f"Rows: tier in the previous score file; columns: tier now. {summary}.") \
        + _table(table.reset_index())


def _notes_table(notes: Mapping[str, int] | None) -> str:
    """Tabulate counted input handlings, or say there were none."""
    if not notes:
        return _paragraph("No input notes were given.")
    frame = pd.DataFrame({"note": list(notes), "count": list(notes.values())})
    return _table(frame)


def _section(heading: str, body: str) -> str:
    anchor = heading.lower().replace(" ", "-")
    return f"<section id=\"{escape(anchor)}\">\n<h2>{escape(heading)}</h2>\n{body}\n</section>"


def _paragraph(text: str) -> str:
    return f"<p class=\"note\">{escape(text)}</p>\n"


def _table(frame: pd.DataFrame, header: bool = True) -> str:
    """Render ``frame`` as an HTML table, every header and cell escaped, numbers right-aligned."""
    head = "<tr>" + "".join(f"<th>{escape(str(c))}</th>" for c in frame.columns) + "</tr>"
    body = []
    for row in frame.itertuples(index=False):
        cells = []
        for column, value in zip(frame.columns, row, strict=True):
            numeric = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
            css = " class=\"num\"" if numeric else ""
            cells.append(f"<td{css}>{escape(_format(value, str(column)))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return "<table>\n" + (head + "\n" if header else "") + "\n".join(body) + "\n</table>\n"


def _format(value: object, column: str) -> str:
    """Display text of one cell: probabilities to 2 decimals, money with separators."""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple, np.ndarray)):
        return "; ".join(map(str, value))
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return ""
    if isinstance(value, (float, np.floating)):
        return f"{value:.2f}" if column in PROBABILITY_COLUMNS else f"{value:,.2f}"
    if isinstance(value, (int, np.integer)):
        return f"{value:,}"
    return str(value)


def _png(draw: Callable[[Axes], object], size: tuple[float, float] = (6.0, 3.8)) -> str:
    """Draw on a fresh figure and return it as an ``<img>`` with a base64 PNG data URI."""
    figure = Figure(figsize=size)
    draw(figure.subplots())
    buffer = io.BytesIO()
    # No "Software" tag: it carries a URL, and the page must hold none.
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight",
                   metadata={"Software": None})
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"<img alt=\"plot\" src=\"data:image/png;base64,{data}\">\n"


def write_report(html: str, path: str | Path) -> Path:
    """Write a rendered report atomically (see :func:`keyltv.data.outputs.write_atomic`)."""
    return write_text(html, path)
