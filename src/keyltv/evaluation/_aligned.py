"""Pairing of per-account inputs by account label, shared by metrics and plots."""

from __future__ import annotations

import pandas as pd


def aligned(**values: object) -> list[object]:
    """``values`` in the order given, with pandas Series reordered to the first Series' index.

    Per-account inputs are paired by position, except that two Series are paired by
    label: a prediction sorted differently from the actual values would otherwise be
    judged against other accounts, and no error would show it. Arrays and lists have
    no labels and stay paired by position; Series of different lengths are returned
    as they are, for the caller's length check.

    Raises
    ------
    ValueError
        If two Series of equal length hold different labels, or the same labels in
        another order with some label repeated (no one way to pair them).
    """
    series = [(name, v) for name, v in values.items() if isinstance(v, pd.Series)]
    if len(series) < 2:
        return list(values.values())
    (first_name, first), out = series[0], dict(values)
    for name, other in series[1:]:
        if len(other) != len(first) or other.index.equals(first.index):
            continue
        for one, two, a, b in ((name, first_name, other, first), (first_name, name, first, other)):
            foreign = a.index.difference(b.index)
            if len(foreign):
                raise ValueError(f"{first_name} and {name} are Series with different index "
                                 f"labels ({len(foreign)} of {one}'s, such as {foreign[0]!r}, "
                                 f"not in {two}'s); pass them indexed by the same accounts")
        if first.index.has_duplicates or other.index.has_duplicates:
            raise ValueError(f"{first_name} and {name} are Series whose indexes repeat labels "
                             "in a different order; pass them in the same order or as arrays")
        out[name] = other.reindex(first.index)
    return list(out.values())
