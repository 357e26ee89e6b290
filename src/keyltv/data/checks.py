"""Check the parsed lines: refuse a broken rule, count the cases that are handled.

The first broken rule of :mod:`keyltv.data.lines` is reported with the file, the column
and a bad value quoted from the source; the cases that are kept but counted (returns,
duplicate lines, outliers, ...) become the log's notes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import duckdb

from keyltv.data.columns import has_margin_column
from keyltv.data.lines import BLANK_ID, part_filter, rules_for
from keyltv.data.schema import (
    OUTLIER_FACTOR,
    PLAIN_NUMBER,
    InputError,
    NumberFormat,
    describe_value,
)


def check_rules(
    con: duckdb.DuckDBPyConnection,
    name: str,
    mapping: Mapping[str, str],
    date_format: str | None,
    numbers: NumberFormat,
    counts: Mapping[str, int],
    drop_blank_ids: bool = False,
    parts: int = 1,
) -> tuple[dict[str, int], float, float]:
    """Raise on a broken rule; count the handled cases of ``lines``.

    ``counts`` comes from :func:`~keyltv.data.lines.parse_lines`. Naming the first
    broken rule and quoting a bad value takes a scan of the source, run only when there
    is one. The handled cases are counted among the lines kept (all but dropped blank ids).

    Returns
    -------
    notes : dict
        Counted handlings, ``lines`` included.
    largest : float
        The largest magnitude of an amount or margin of a kept line.
    total : float
        The larger of the sums of the magnitudes of the kept lines' amounts and margins
        (a bound on any sum of them).
    """
    lines, blank = counts["lines"], counts["blank"]
    if lines == 0:
        raise InputError(f"{name}: no transaction rows (empty file or header only)")
    if counts["broken"] > 0:
        _raise_broken_rule(con, name, mapping, date_format, numbers, drop_blank_ids)
    if blank == lines:  # only reachable with drop_blank_ids
        raise InputError(f"{name}: column {mapping['customer_id']!r}: every one of the "
                         f"{lines} line(s) has a blank customer id; nothing is left to score")
    # Distinct line hashes counted in ``parts`` partitions (equal hashes fall in the same
    # one), for the same reason as the daily table's (see keyltv.data.lines.partition_count).
    distinct = " + ".join(
        f"(SELECT count(*) FROM (SELECT DISTINCT line_hash FROM lines WHERE NOT blank_id "
        f"{part_filter('line_hash', k, parts)}))" for k in range(parts))
    cursor = con.execute(
        f"""SELECT count(*) FILTER (WHERE a < 0) AS return_lines,
                   count(*) FILTER (WHERE a = 0) AS zero_amount_lines,
                   count(*) FILTER (WHERE m IS NULL) AS missing_margin,
                   -- A margin above a sale's amount (a rate over 100%) is kept, counted.
                   count(*) FILTER (WHERE a > 0 AND m > a) AS margin_above_amount,
                   -- Amounts are kept to a millionth: a smaller one adds nothing to a day.
                   count(*) FILTER (WHERE a <> 0 AND abs(a) < 5e-7) AS amount_below_precision,
                   max(a) FILTER (WHERE isfinite(a)) AS max_amount,
                   greatest(max(abs(a)), COALESCE(max(abs(m)), 0)) AS largest,
                   greatest(sum(abs(a)), COALESCE(sum(abs(m)), 0)) AS total,
                   -- Identical lines via a 64-bit hash of each: a GROUP BY over the
                   -- values held the whole log in memory (a false match: p < 1e-5 at 20M).
                   -- Distinct hashes counted by a DISTINCT subquery, not count(DISTINCT)
                   -- beside the other aggregates: 0.1 s less at 5M lines (ad hoc).
                   count(*) - ({distinct}) AS duplicate_lines
            FROM (SELECT a, m FROM lines WHERE NOT blank_id)"""
    )
    row = dict(zip([d[0] for d in cursor.description], cursor.fetchall()[0], strict=True))
    notes = {"lines": int(lines), **{k: int(row[k]) for k in ("return_lines", "zero_amount_lines")}}
    if drop_blank_ids:
        notes["blank_id_lines_dropped"] = int(blank)
    if has_margin_column(mapping):
        notes["missing_margin_lines"] = int(row["missing_margin"])
        notes["margin_above_amount_lines"] = int(row["margin_above_amount"])
    notes["duplicate_lines"] = int(row["duplicate_lines"])
    if counts.get("padded_ids"):  # ' 7 ' and '7' are one account: say that they were merged
        notes["ids_stripped_of_whitespace"] = int(counts["padded_ids"])
    if counts.get("point_zero_ids"):
        # Kept as written (ids are opaque text), but they will not join to a CRM's 17850:
        # a float column exported as text. Typed float columns are read as 17850.
        notes["ids_ending_in_point_zero"] = int(counts["point_zero_ids"])
    if row["amount_below_precision"]:  # a note only when it happens: it almost never does
        notes["amount_below_precision_lines"] = int(row["amount_below_precision"])
    notes["outlier_lines"] = _count_outliers(con, row["max_amount"], _median_positive_line(con))
    return notes, float(row["largest"]), float(row["total"])


def _raise_broken_rule(
    con: duckdb.DuckDBPyConnection,
    name: str,
    mapping: Mapping[str, str],
    date_format: str | None,
    numbers: NumberFormat,
    drop_blank_ids: bool = False,
) -> None:
    """Raise for the first broken rule, quoting a bad value.

    Rules are tried in :func:`~keyltv.data.lines.rules_for` order.

    With ``drop_blank_ids`` the lines without an id are not read (they are dropped).
    """
    select = ", ".join(
        f"count(*) FILTER (WHERE {cond}) AS {key}, "
        f"any_value(COALESCE({_raw_of(role, mapping)}, '')) FILTER (WHERE {cond}) AS {key}_ex, "
        f"any_value(source_file) FILTER (WHERE {cond}) AS {key}_file"
        for key, cond, role, _, _ in rules_for(mapping)
    )
    kept = f"WHERE NOT {BLANK_ID}" if drop_blank_ids else ""
    row = con.execute(f"SELECT {select} FROM parsed {kept}").df().iloc[0]
    for key, _, role, message, allowed in rules_for(mapping):
        if row[key] > 0:
            column = _column_label(mapping, role)
            if date_format and role == "date" and key != "odd_date":
                allowed = f"format {date_format!r} (date_format in the config)"
            allowed = allowed.replace(PLAIN_NUMBER, numbers.hint())
            # Of several files, name the one that holds the quoted value.
            file = row[key + "_file"]
            where = f"{file}" if isinstance(file, str) else name
            of = f" of {name}" if isinstance(file, str) else ""
            raise InputError(
                f"{where}: column {column!r}: {message} {describe_value(row[key + '_ex'])} "
                f"in {int(row[key])} row(s){of}; expected {allowed}"
            )


# Buckets per doubling of the amount in :func:`_median_positive_line`: the median is
# known to within 2 ** (1 / 256) - 1, about 0.3%.
_MEDIAN_BUCKETS_PER_DOUBLING = 128


def _median_positive_line(con: duckdb.DuckDBPyConnection) -> float:
    """Median of the positive line amounts, to about 0.3%, the same on every run.

    DuckDB's exact ``median`` holds every value in memory (it ran out of a 300 MB
    ``memory_limit`` at 20M lines), and ``approx_quantile`` merges per-thread digests
    in any order (its estimate, and so the outlier count, changed from run to run).
    Lines are counted in log-spaced buckets instead, and the median is the middle of
    the bucket that holds it. NaN when no line is positive.
    """
    k = _MEDIAN_BUCKETS_PER_DOUBLING
    bucket = con.execute(
        f"""
        WITH b AS (SELECT floor(log2(a) * {k}) AS bucket, count(*) AS n FROM lines
                   WHERE a > 0 AND isfinite(a) AND NOT blank_id GROUP BY bucket),
             c AS (SELECT bucket, sum(n) OVER (ORDER BY bucket) AS below,
                          sum(n) OVER () AS total FROM b)
        SELECT min(bucket) FROM c WHERE 2 * below >= total
        """
    ).fetchall()[0][0]
    return float("nan") if bucket is None else 2.0 ** ((bucket + 0.5) / k)


def _count_outliers(con: duckdb.DuckDBPyConnection, largest: float | None,
                    median: float) -> int:
    """Lines above ``OUTLIER_FACTOR`` x the median positive line; kept, only counted.

    The extra scan runs only when the largest line is above the threshold.
    """
    if largest is None or math.isnan(median) or largest <= OUTLIER_FACTOR * median:
        return 0
    return int(con.execute("SELECT count(*) FROM lines WHERE a > ? AND NOT blank_id",
                           [OUTLIER_FACTOR * float(median)]).fetchall()[0][0])


def _raw_of(role: str, mapping: Mapping[str, str]) -> str:
    """SQL for the text a rule of ``role`` quotes: a computed value shows its factors."""
    if role == "amount" and "quantity" in mapping:
        return "concat(quantity_raw, ' x ', price_raw)"
    if role == "margin" and "unit_cost" in mapping:
        return "concat(quantity_raw, ' x (', price_raw, ' - ', cost_raw, ')')"
    return {"customer_id": "customer_id", "date": "date_raw", "amount": "amount_raw",
            "margin": "margin_raw", "quantity": "quantity_raw", "unit_price": "price_raw",
            "unit_cost": "cost_raw"}[role]


def _column_label(mapping: Mapping[str, str], role: str) -> str:
    """The column a message names; a computed amount or margin names its formula."""
    if role == "amount" and "quantity" in mapping:
        return f"{mapping['quantity']} x {mapping['unit_price']}"
    if role == "margin" and "unit_cost" in mapping:
        return f"{mapping['quantity']} x ({mapping['unit_price']} - {mapping['unit_cost']})"
    return mapping.get(role, role)
