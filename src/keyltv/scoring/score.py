"""Score accounts with a fitted bundle: model outputs, tiers, flags, migrations.

Scoring never retrains: it only calls the registered bundle's ``predict``.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from keyltv.config import Config, Flags
from keyltv.data.accounts import load_accounts, parse_numbers
from keyltv.data.outputs import unescape_formulas
from keyltv.data.schema import (
    ISO_DATE_PATTERN,
    InputError,
    NumberFormat,
    as_date,
    describe_value,
)
from keyltv.models.probabilistic import ALL_INPUTS as PROBABILISTIC_INPUTS
from keyltv.scoring.reasons import explain_flags
from keyltv.scoring.rules import (
    TIER_ORDER,
    apply_flags,
    precision_targets,
    resolve_thresholds,
    tier_migrations,
    tier_rule,
)

SCORE_COLUMNS = [
    "customer_id", "as_of", "horizon_days", "predicted_value", "predicted_value_low",
    "predicted_value_high", "predicted_profit", "predicted_orders", "p_alive",
    "trailing_value", "decline_risk", "growth_potential", "tier", "segment",
    "key_account", "at_risk", "high_potential", "low_margin_key", "reasons", "previous_tier",
    "tier_change", "tier_rule", "model_version", "model_run_id",
]


def check_feature_schema(feature_columns: list[str], features: pd.DataFrame, source: str,
                         bundle: object = None, accounts_source: str | None = None) -> None:
    """Fail with the first model input that the data does not provide, or not as a number.

    Parameters
    ----------
    bundle : KeyLTVModel, optional
        When given, columns its LightGBM parts learned as numbers must be numeric here.
    accounts_source : str, optional
        File name of the account table, for messages about ``attr_*`` columns.

    Raises
    ------
    InputError
        Naming the missing column; attributes (``attr_*``) come from ``--accounts``.
    """
    missing = [c for c in feature_columns if c not in features.columns]
    if missing:
        column = missing[0]
        hint = (f"the model was trained with account attribute {column[5:]!r}: pass an "
                "--accounts table with it") if column.startswith("attr_") else \
            "the model was trained by another keyltv version"
        raise InputError(f"{source}: model input column {column!r} is missing; {hint}")
    _check_finite_inputs(feature_columns, features, source)
    for part in _gbm_parts(bundle):
        for column in part.feature_names_in_:
            if column in part.categories_ or column not in features.columns or \
                    pd.api.types.is_numeric_dtype(features[column]):
                continue
            values = features[column].dropna().astype(str)
            bad = values[pd.to_numeric(values, errors="coerce").isna()]
            if bad.empty:
                continue
            where, name = ((accounts_source or "account table", column[5:])
                           if column.startswith("attr_") else (source, column))
            raise InputError(
                f"{where}: column {name!r}: value {describe_value(bad.iloc[0])} is not a "
                "number; the model was trained with numbers in this column"
            )


def _check_finite_inputs(feature_columns: list[str], features: pd.DataFrame, source: str
                         ) -> None:
    """Refuse an infinite model input, and a blank one where no model handles it.

    LightGBM reads a blank feature as missing; an infinite one, or a blank
    input of the probabilistic models (a hand-edited feature file; the feature query
    writes a number there for every account), would otherwise stop scoring
    with an internal error deep in a model.
    """
    for column in feature_columns:
        if not pd.api.types.is_numeric_dtype(features[column]):
            continue
        values = features[column].to_numpy(dtype=float, na_value=np.nan)
        required = column in PROBABILISTIC_INPUTS
        bad = np.isinf(values) | (np.isnan(values) if required else False)
        if bad.any():
            first = features.index[bad.argmax()]
            raise InputError(
                f"{source}: column {column!r}: {'blank or ' if required else ''}infinite "
                f"value in {int(bad.sum())} row(s), the first for account {first!r}; "
                "keyltv features writes a finite number there for every account")


def count_unseen_levels(bundle: object, features: pd.DataFrame) -> int:
    """Attribute values the model never saw in training; they are scored as missing."""
    levels: dict[str, set[str]] = {}
    for part in _gbm_parts(bundle):
        for column, seen in part.categories_.items():
            levels.setdefault(column, set()).update(seen)
    unseen = 0
    for column, seen in levels.items():
        if column in features.columns:
            values = features[column].dropna().astype(str)
            unseen += int((~values.isin(seen)).sum())
    return unseen


def _gbm_parts(bundle: object) -> list[object]:
    """List the bundle's fitted LightGBM estimators (they know the categorical inputs)."""
    if bundle is None:
        return []
    parts = [getattr(bundle, "value_model", None), *(getattr(bundle, "events", None) or ())]
    return [p for p in parts if hasattr(p, "categories_") and hasattr(p, "feature_names_in_")]


def score_accounts(
    bundle: object,
    features: pd.DataFrame,
    *,
    as_of: date,
    model_version: str,
    config: Config,
    previous: pd.Series | None = None,
    source: str = "features",
    accounts_source: str | None = None,
    previous_source: str | Path = "previous",
    previous_value: pd.Series | None = None,
) -> pd.DataFrame:
    """One score row per account of ``features`` (sorted by ``customer_id``).

    Parameters
    ----------
    bundle : KeyLTVModel
        Loaded predictor.
    features : pandas.DataFrame
        Features at ``as_of`` (with ``attr_*`` columns when the model uses attributes),
        indexed by ``customer_id`` or with a ``customer_id`` column (as written by
        ``keyltv features``).
    as_of : datetime.date
        Also ``"YYYY-MM-DD"`` or a datetime (see :func:`~keyltv.data.schema.as_date`).
    previous : pandas.Series, optional
        Tier per account from an earlier score file, for ``previous_tier`` and
        ``tier_change`` (see :func:`read_previous_tiers`).
    previous_value : pandas.Series, optional
        What the earlier file's tiers ranked, per account (see :func:`read_previous`).
        With it, and an earlier file of the same model, horizon and ranking basis
        (:func:`comparable_previous`), accounts that barely moved near a cut keep their
        earlier tier (``tiers.hysteresis``).
    source, accounts_source, previous_source : str, optional
        Names for messages: where the features, the attributes and ``previous`` came from.

    Raises
    ------
    InputError
        Duplicated account ids, a model input missing or not numeric as in training,
        or ``previous`` sharing no id with ``features``.

    Returns
    -------
    pandas.DataFrame
        Columns of :data:`SCORE_COLUMNS` that apply (profit only with margins,
        migrations only with ``previous``).
    """
    features = indexed_by_account(features, source)
    if getattr(bundle, "feature_columns", None) is not None:  # a missing or text input
        check_feature_schema(bundle.feature_columns, features, source, bundle, accounts_source)
        features = features[bundle.feature_columns]
    if previous is not None:
        match_previous(previous, features.index, previous_source, as_of)
    outputs = bundle.predict(features)
    outputs["trailing_value"] = features["trailing_value"].clip(lower=0.0)
    flags, _ = scoring_flags(bundle, config, outputs)
    run_id = getattr(bundle, "training_run_id", None)
    held = previous if comparable_previous(previous, outputs, model_version,
                                           getattr(bundle, "horizon_days", None),
                                           tier_rule=tier_rule(config.tiers),
                                           run_id=run_id) else None
    scored = apply_flags(outputs, flags, config.tiers, held, previous_value)
    scored["reasons"] = explain_flags(bundle, features, scored,
                                      low_margin_rate=flags.low_margin_rate)
    if previous is not None:
        scored = scored.join(tier_migrations(scored["tier"], previous))
    scored["as_of"] = as_date(as_of).isoformat()
    scored["horizon_days"] = bundle.horizon_days
    scored["tier_rule"] = tier_rule(config.tiers)
    scored["model_version"] = model_version
    scored["model_run_id"] = run_id
    scored = scored.rename_axis("customer_id").reset_index().sort_values("customer_id")
    return scored[[c for c in SCORE_COLUMNS if c in scored.columns]].reset_index(drop=True)


def indexed_by_account(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """``frame`` indexed by its ``customer_id`` column, if it has one; ids must be unique.

    Without this, a frame with the id as a column would be scored under its row numbers.

    Raises
    ------
    InputError
        When an id occurs twice.
    """
    if "customer_id" in frame.columns:
        frame = frame.set_index("customer_id")
    duplicated = frame.index[frame.index.duplicated()]
    if len(duplicated):
        raise InputError(f"{name}: duplicated customer id {duplicated[0]!r} "
                         f"({len(duplicated)} duplicate row(s))")
    return frame


def scoring_flags(bundle: object, config: Config, outputs: pd.DataFrame
                  ) -> tuple[Flags, dict[str, str]]:
    """The flag thresholds of a scoring, and where each came from.

    See :func:`keyltv.scoring.rules.resolve_thresholds`: for a flag whose precision
    target the scoring config sets (``flags.*_precision``), the threshold set on
    ``outputs`` (the model outputs of the accounts scored, indexed by account, with
    ``trailing_value``), else the one the model learned in training for the same
    target, else the config's. With the target set to null the fixed threshold is
    used. Bundles trained before thresholds were learned carry none.

    A threshold learned for another target is not used: one learned for precision 0.5
    flagged 441 accounts at an expected precision of 0.48 when the scoring config asked
    for 0.7, five times as many as the 0.5 target's own list (audit 29).
    """
    learned = getattr(bundle, "flag_thresholds", None) or {}
    other = other_learned_targets(bundle, config)
    return resolve_thresholds(config.flags, {k: v for k, v in learned.items() if k not in other},
                              outputs)


def other_learned_targets(bundle: object, config: Config) -> dict[str, tuple[float, float]]:
    """Learned thresholds whose precision target differs from the scoring config's.

    Returns
    -------
    dict
        ``Flags`` threshold field -> (target in training, target now). Empty for a bundle
        that does not record its targets (saved before it did).
    """
    learned = getattr(bundle, "flag_thresholds", None) or {}
    trained = getattr(bundle, "flag_targets", None) or {}
    now = precision_targets(config.flags)
    return {field: (trained[field], now[field]) for field in learned
            if field in trained and field in now and trained[field] != now[field]}


def match_previous(previous: pd.Series, scored: pd.Index, path: str | Path,
                   as_of: date | None = None) -> None:
    """Refuse an earlier score file with no account in common, or of a later day.

    A file with no account in common (ids that lost their leading zeros, another book's
    scores) would mark every account ``new`` without a word; a later file (this month's
    given as last month's) would run every migration backwards.

    Raises
    ------
    InputError
        When no id of ``previous`` is among ``scored``, or its ``as_of`` is after ``as_of``.
    """
    earlier = previous.attrs.get("as_of")
    if as_of is not None and earlier is not None and earlier > as_of:
        raise InputError(f"{path}: column 'as_of': the file is as of {earlier}, after --as-of "
                         f"{as_of}; --previous takes the score file of an earlier run")
    shared = previous.index.isin(scored)
    if len(previous) and not shared.any():
        raise InputError(
            f"{path}: column 'customer_id': none of its {len(previous)} ids is among the "
            f"{len(scored)} accounts scored now (e.g. {previous.index[0]!r} there, "
            f"{scored.min()!r} here); check leading zeros and that it scored the same book")


def comparable_previous(previous: pd.Series | None, outputs: pd.DataFrame, model_version: str,
                        horizon_days: int | None, *, tier_rule: str | None = None,
                        run_id: str | None = None) -> bool:
    """Whether an earlier run's tiers rank the same quantity by the same model and rule.

    Only then may the tolerance band keep an account in its earlier tier: a file of
    another model version, horizon or ranking basis (value against profit) would carry
    tiers over from another ranking (the audit found 66 accounts tiered differently
    through a value-ranked earlier file). A file that does not tell its model version
    and horizon (a score file cut down to a few columns) is not taken for the same run:
    it was, and its tiers were held by the band (audit 28). Its tier rule (``tier_rule``)
    and the model's training run (``run_id``; every project's first model is
    ``keyltv/1``) must match too where both files tell them (audit 29); files written
    before these columns existed do not.
    """
    if previous is None:
        return False
    basis = "profit" if "predicted_profit" in outputs else "value"
    attrs = previous.attrs
    return (attrs.get("model_version") == model_version
            and attrs.get("horizon_days") == str(horizon_days)
            and attrs.get("ranked_by") == basis
            and _same_where_told(attrs.get("tier_rule"), tier_rule)
            and _same_where_told(attrs.get("model_run_id"), run_id))


def _same_where_told(earlier: str | None, now: str | None) -> bool:
    """Equal, or one of the two runs does not tell (None)."""
    return earlier is None or now is None or earlier == now


def read_previous_tiers(path: str | Path) -> pd.Series:
    """Tier per account from an earlier score file (CSV or Parquet).

    Raises
    ------
    InputError
        Missing ``customer_id``/``tier`` columns or unknown tier values.
    """
    return read_previous(path)[0]


def read_previous(path: str | Path, numbers: NumberFormat | None = None
                  ) -> tuple[pd.Series, pd.Series | None]:
    """Tiers and ranking values per account from an earlier score file.

    Parameters
    ----------
    path : str or pathlib.Path
        A score file that keyltv wrote (CSV or Parquet), or one re-saved by a spreadsheet.
    numbers : NumberFormat, optional
        The config's number form (``decimal_separator``, ``thousands_separator``): a
        spreadsheet re-saves numbers in its locale's form. Numbers in the plain form that
        keyltv writes are read too.

    Returns
    -------
    tiers : pandas.Series
        As :func:`read_previous_tiers`, with ``attrs`` ``as_of``, ``ranked_by``,
        ``model_version``, ``horizon_days``, ``tier_rule`` and ``model_run_id`` where the
        file tells them.
    values : pandas.Series or None
        What its tiers ranked (predicted profit, else predicted value); None for a file
        of tiers alone.

    Raises
    ------
    InputError
        As :func:`read_previous_tiers`; an ``as_of`` that is not an ISO date; a ranking
        value that is no number in the config's form nor in keyltv's.
    """
    # Its columns are checked where they are read (a European re-save's '1234,5' beside
    # '0' is no typo to refuse in a column that may not be read at all).
    numbers = numbers or NumberFormat()
    frame = load_accounts(path, id_column="customer_id", decimal_separator=numbers.decimal,
                          thousands_separator=numbers.thousands, refuse_stray_text=False)
    # The tiers carry what this file tells about its run, not what loading counted.
    frame.attrs = {"source": frame.attrs["source"]}
    # keyltv's CSV writer quoted the ids a spreadsheet would run as formulas ('=1+1);
    # they match the log's raw ids without that quote (escape_formulas is one-to-one).
    frame.index = pd.Index(unescape_formulas(frame.index.to_series()), name=frame.index.name,
                           dtype=frame.index.dtype)
    if "tier" not in frame.columns:
        raise InputError(f"{path}: column 'tier' is missing; pass an earlier keyltv score file")
    tiers = frame["tier"].astype("string")
    bad = tiers[~tiers.isin(TIER_ORDER) & tiers.notna()]
    if len(bad):
        raise InputError(f"{path}: column 'tier': unknown tier {bad.iloc[0]!r}; allowed A, B, C, D")
    tiers = tiers.astype(object)
    if "as_of" in frame.columns:  # a keyltv score file has one; kept to check the order of runs
        as_of = _latest_iso_day(frame["as_of"], path)
        if as_of is not None:
            tiers.attrs["as_of"] = as_of
    if "predicted_value" in frame.columns:  # a score file: what its tiers ranked
        profit = "predicted_profit" in frame.columns and frame["predicted_profit"].notna().any()
        tiers.attrs["ranked_by"] = "profit" if profit else "value"
    # To say when the runs differ (see comparable_previous).
    for column in ("model_version", "horizon_days", "tier_rule", "model_run_id"):
        # A run id of hex digits that reads as a number (12e4...) would come back
        # rewritten: such a file is taken not to tell its run.
        if column not in frame.columns or (
                column == "model_run_id" and pd.api.types.is_numeric_dtype(frame[column])):
            continue
        values = unescape_formulas(frame[column].dropna().astype("string")).unique()
        if len(values) == 1:
            tiers.attrs[column] = str(values[0]).removesuffix(".0")
    ranked = {"profit": "predicted_profit", "value": "predicted_value"}.get(
        tiers.attrs.get("ranked_by", ""))
    values = None if ranked is None else _ranking_values(frame[ranked], numbers, path)
    return tiers, values


def _latest_iso_day(column: pd.Series, path: str | Path) -> date | None:
    """The latest day of an ``as_of`` column; a file mixing days is as late as its latest row.

    keyltv writes ISO dates; ``12/07/2023`` (a spreadsheet's re-save) is refused rather
    than read month-first, as the transaction loader refuses to guess.

    Raises
    ------
    InputError
        For the first value that is not an ISO date (``YYYY-MM-DD``, perhaps with a time).
    """
    text = column.dropna().astype("string").str.strip()
    text = text[text != ""]
    days = pd.to_datetime(text.str.extract(r"^(\d{4}-\d{1,2}-\d{1,2})")[0], format="%Y-%m-%d",
                          errors="coerce")
    bad = days.isna() | ~text.str.match(ISO_DATE_PATTERN)
    if bad.any():
        raise InputError(
            f"{path}: column 'as_of': value {describe_value(text[bad].iloc[0])} is not an ISO "
            "date; keyltv writes YYYY-MM-DD and does not guess day-first or month-first "
            "(a spreadsheet may have re-saved it: save the column as YYYY-MM-DD)")
    return days.max().date() if len(days) else None


def _ranking_values(column: pd.Series, numbers: NumberFormat, path: str | Path) -> pd.Series:
    """The earlier file's ranking values as floats, read in the config's form or keyltv's.

    A value that would be dropped would turn the tolerance band off without a word (an
    audit found 15 accounts changing tier through a file re-saved with decimal commas).
    The config's form is tried first: it is the one the user declared.

    Raises
    ------
    InputError
        For the first value that neither form reads, naming what the config sets.
    """
    if pd.api.types.is_numeric_dtype(column):  # read in the config's form, or typed Parquet
        return column.astype(float)
    text = column.astype("string").str.strip().replace("", pd.NA)
    given = text.notna()
    # The config's form, then keyltv's own (once, where they are the same).
    read = {form: parse_numbers(text, form) for form in dict.fromkeys([numbers, NumberFormat()])}
    for values in read.values():
        if (np.isfinite(values) | ~given).all():
            return values
    readable = pd.concat([np.isfinite(v) for v in read.values()], axis=1).any(axis=1)
    if (given & ~readable).any():
        keyltv_form = "" if numbers.plain else ", or -1234.5 as keyltv writes it"
        raise InputError(
            f"{path}: column {column.name!r}: value {describe_value(text[given & ~readable].iloc[0])} "
            f"is not a number; expected {numbers.hint()}{keyltv_form}")
    plain = text[given & ~np.isfinite(read[numbers])].iloc[0]
    raise InputError(f"{path}: column {column.name!r}: value {describe_value(plain)} is written "
                     "as keyltv writes numbers, other values in the config's form "
                     f"({numbers.hint()}); write the whole column in one form")
