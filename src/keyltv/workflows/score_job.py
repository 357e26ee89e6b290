"""The score job: score every account with a registered model, record it, write the files.

The scoring is recorded in MLflow first, then the score file and its HTML report are
written (see :func:`publish_scores`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pandas as pd

from keyltv.config import Config
from keyltv.data.outputs import count_escaped_cells, write_table
from keyltv.data.schema import InputError, NumberFormat
from keyltv.features import account_features, with_attributes
from keyltv.features.accounts import year_ago_ratio
from keyltv.features.attributes import ATTRIBUTE_PREFIX, as_trained
from keyltv.inputs import Inputs, require_orders
from keyltv.models.bundle import KeyLTVModel, ordered
from keyltv.scoring.report import render_report, write_report
from keyltv.scoring.rules import (
    CONFIGURED,
    SEGMENTS,
    THRESHOLDED_FLAGS,
    TIER_ORDER,
    assign_tiers,
    crowded_flags,
    silent_flags,
    tier_basis,
    tier_rule,
)
from keyltv.scoring.score import (
    comparable_previous,
    count_unseen_levels,
    other_learned_targets,
    read_previous,
    score_accounts,
    scoring_flags,
)
from keyltv.tracking.pyfunc import load_bundle
from keyltv.tracking.store import Store, sigterm_held

log = logging.getLogger("keyltv")


@dataclass
class ScoreResult:
    """Score table and what happened on the way."""

    scores: pd.DataFrame
    model_version: str
    notes: dict[str, int]
    seed: int | None = None
    # Things an operator should read (a flag that marked nobody, an old model), in words.
    warnings: list[str] = field(default_factory=list)
    # Accounts of --previous not scored now, per their earlier tier (for the report).
    previous_not_scored: dict[str, int] = field(default_factory=dict)
    # The tolerance band the tiers used (tiers.hysteresis); 0 without a comparable
    # --previous (see keyltv.scoring.score.comparable_previous).
    tiers_hysteresis: float = 0.0
    # Each thresholded flag's threshold and where it came from (see
    # keyltv.scoring.rules.resolve_thresholds): field -> (threshold, source).
    flag_thresholds: dict[str, tuple[float, str]] = field(default_factory=dict)


def score(inputs: Inputs, config: Config, store: Store, model_uri: str,
          horizon_days: int | None = None, previous: str | Path | None = None) -> ScoreResult:
    """Score every account seen before ``as_of`` with a registered model (no refit)."""
    bundle, info = load_bundle(model_uri)
    if horizon_days is not None and horizon_days != bundle.horizon_days:
        raise InputError(
            f"model {model_uri!r}: trained for a {bundle.horizon_days}-day horizon, "
            f"--horizon-days is {horizon_days}; retrain with that horizon or omit the option"
        )
    if (horizon_days is None and "horizon_days" in config.model_fields_set
            and config.horizon_days != bundle.horizon_days):
        # A config file that asks for another horizon than the model's (e.g. the config of
        # another training) would otherwise get the model's horizon without a word.
        raise InputError(
            f"model {model_uri!r}: trained for a {bundle.horizon_days}-day horizon, the "
            f"config's horizon_days is {config.horizon_days}; retrain with that horizon or "
            "remove horizon_days from the config"
        )
    return score_bundle(inputs, config, bundle, info["model_version"], previous)


def score_bundle(inputs: Inputs, config: Config, bundle: KeyLTVModel, model_version: str,
                 previous: str | Path | None = None) -> ScoreResult:
    """Score every account seen before ``as_of`` with a loaded bundle (no store needed)."""
    require_orders(inputs, config)
    check_text_columns(inputs, bundle, config)
    accounts, ignored = trained_accounts(inputs, bundle, config)
    features = with_attributes(
        account_features(inputs.log, inputs.as_of, bundle.horizon_days), accounts, inputs.as_of
    )
    accounts_source = inputs.accounts.attrs.get("source") if inputs.accounts is not None else None
    # A spreadsheet re-saves the earlier file's numbers in its locale's form, the config's.
    numbers = NumberFormat(config.decimal_separator, config.thousands_separator)
    prev, prev_value = (read_previous(previous, numbers) if previous is not None
                        else (None, None))
    # score_accounts checks the inputs and the earlier file, naming these sources.
    scores = score_accounts(bundle, features, as_of=inputs.as_of, model_version=model_version,
                            config=config, previous=prev, source=inputs.log.source,
                            accounts_source=accounts_source, previous_source=str(previous),
                            previous_value=prev_value)
    notes = {**inputs.notes, "attribute_values_unseen_in_training":
             count_unseen_levels(bundle, features), "accounts_scored": len(scores)}
    if ignored:
        notes["attribute_columns_ignored_as_ids"] = len(ignored)
    # Scored zero (see KeyLTVModel.predict): only returns or zero-value lines so far.
    notes["accounts_without_orders_scored_zero"] = int((~ordered(features)).sum())
    lost: dict[str, int] = {}
    band = config.tiers.hysteresis if prev_value is not None and comparable_previous(
        prev, scores, model_version, bundle.horizon_days, tier_rule=tier_rule(config.tiers),
        run_id=getattr(bundle, "training_run_id", None)) else 0.0
    if prev is not None:
        # Accounts of the earlier run that are not scored now (no line before --as-of).
        gone = prev[~prev.index.isin(features.index)]
        notes["previous_accounts_not_scored"] = len(gone)
        lost = {str(t): int(n) for t, n in gone.value_counts().items()}
        # Accounts that the tolerance band kept in their earlier tier (tiers.hysteresis).
        by_rank = assign_tiers(tier_basis(scores), config.tiers)  # without the band
        notes["tier_moves_held_near_cuts"] = int(((scores["tier"] == scores["previous_tier"])
                                                  & (by_rank != scores["tier"])).sum())
    margins = int(features["margin_rate"].notna().sum())
    if bundle.margin_rate is not None and margins == 0:
        # A model trained with margins, a log without: no profit is predicted (see predict).
        notes["accounts_without_margins"] = len(features)
    elif bundle.margin_rate is not None:
        # Accounts that ordered but have no margin rate of their own (no margin on any
        # line, or no net value): their profit uses the training book's rate, which the
        # output cannot show.
        notes["accounts_given_the_book_margin_rate"] = int(
            (features["margin_rate"].isna() & ordered(features)).sum())
    if bundle.margin_rate is None and margins:
        notes["margins_unused_by_model"] = margins  # accounts whose margins it cannot use
    if inputs.accounts is not None and not any(c.startswith(ATTRIBUTE_PREFIX)
                                               for c in bundle.feature_columns):
        # The model was trained without attributes: the table given changes nothing.
        notes["account_attributes_unused"] = inputs.accounts.shape[1]
    # The same thresholds as score_accounts set (the valuable accounts are found by id).
    flags, sources = scoring_flags(bundle, config, scores.set_index("customer_id"))
    money = money_scale_warning(inputs, bundle, features, config)
    # Predictions in the wrong units make any predicted-to-trailing ratio a "season".
    season = [] if money else season_warning(inputs, bundle.horizon_days, scores)
    warnings = silent_flags(scores, flags) + crowded_flags(scores, flags, sources) + \
        unused_learned_thresholds(bundle, config, sources) + \
        scoring_warnings(inputs, bundle, model_version, notes, prev, config) + money + season
    thresholds = {field: (getattr(flags, field), source) for field, source in sources.items()}
    return ScoreResult(scores, model_version, notes, config.seed, warnings, lost, band,
                       thresholds)


def check_text_columns(inputs: Inputs, bundle: KeyLTVModel, config: Config) -> None:
    """Refuse an account table read without the model's ``account_text_columns``.

    Training read those columns as categories; read as numbers here (a ``score``
    without the training config), every value is a level the model never saw, and the
    scores changed with nothing said: ``attribute_values_unseen_in_training`` 372 of
    372 accounts, decline and growth scores moved by up to 0.06 (audit 28).

    Raises
    ------
    InputError
        Naming the account table, the columns and what to pass.
    """
    if inputs.accounts is None:
        return
    trained = getattr(bundle, "account_text_columns", ())  # () in older bundles
    missing = [c for c in trained if c not in config.account_text_columns
               and c in inputs.accounts.columns]
    if missing:
        source = inputs.accounts.attrs.get("source", "account table")
        raise InputError(
            f"{source}: column(s) {', '.join(map(repr, missing))}: the model was trained with "
            "them in account_text_columns (read as categories), and this config does not "
            "name them; pass the training config with --config, or add them to "
            "account_text_columns")


def trained_accounts(inputs: Inputs, bundle: KeyLTVModel, config: Config
                     ) -> tuple[pd.DataFrame | None, list[str]]:
    """The account table as the model was trained on it, and the columns it left out.

    Training decided which columns are ids and which are dates
    (:func:`keyltv.features.attributes.as_trained`); a table of other accounts, a
    month later, is not judged again. The columns left out are said in one ``INFO``
    line: training warned about them.
    """
    if inputs.accounts is None:
        return None, []
    ignored = [c for c in getattr(bundle, "ignored_attributes", {})
               if c in inputs.accounts.columns]
    if ignored:
        log.info("%s: column(s) %s not used: the model left them out in training as ids",
                 inputs.accounts.attrs.get("source", "account table"),
                 ", ".join(map(repr, ignored)))
    return as_trained(inputs.accounts, bundle.feature_columns, ignored,
                      config.date_format), ignored


# A median order value this many times the training book's, either way, is not a
# book that changed but money in other units (thousands, cents): the trees split on
# amounts in the training book's units (an audit's log divided by 1000 was predicted at
# 26x its trailing value, Spearman 0.35 against the same log in units).
MONEY_SCALE_GAP = 10.0


def money_scale_warning(inputs: Inputs, bundle: KeyLTVModel, features: pd.DataFrame,
                        config: Config) -> list[str]:
    """Say when this log's money is on another scale than the training book's.

    Compares the median ``avg_order_value`` of the accounts with an order against the
    training book's (``book_medians``; a bundle saved before it was kept is not
    checked). An order value does not grow with the length of the history, as an
    account's total does.
    """
    trained = getattr(bundle, "book_medians", {}).get("avg_order_value")
    buyers = ordered(features)
    if not trained or trained <= 0 or not buyers.any():
        return []
    now = float(features.loc[buyers, "avg_order_value"].median())
    if now <= 0 or max(now / trained, trained / now) < MONEY_SCALE_GAP:
        return []
    return [f"the median order value of {inputs.log.source} is {now:,.4g} against "
            f"{trained:,.4g} in the book the model was trained on ({now / trained:.3g}x, "
            f"{config.columns.value_label()}): if the amounts are in other units (thousands, cents), "
            "convert them or retrain; the models learned the training book's amounts"]


# A year-ago ratio of next to trailing value this far from the prediction's own ratio,
# either way, is worth a word: a quarter, more than the year-to-year drift of a book
# without a strong season (silent at six simulator origins with a 182-day horizon).
SEASON_GAP = 1.25


def season_warning(inputs: Inputs, horizon_days: int, scores: pd.DataFrame) -> list[str]:
    """Say when the same horizon a year ago moved unlike this prediction: a season.

    A horizon shorter than a year can fall in a season, and no model here can learn one
    from training cutoffs with less than a year of log before them: on a wholesale log
    with Christmas peaks, every model predicted 0.51-0.68x of the half year that held the
    peak and 1.36-1.74x of the one after it (an audit at stop 19). The job cannot correct
    that without a model of the season, but it can say what happened a year ago
    (:func:`keyltv.features.accounts.year_ago_ratio`) next to what it predicts.
    """
    then = year_ago_ratio(inputs.log, inputs.as_of, horizon_days)
    trailing = float(scores["trailing_value"].sum())
    predicted = float(scores["predicted_value"].sum())
    if then is None or then <= 0 or trailing <= 0 or predicted <= 0:
        return []
    now = predicted / trailing
    if max(then / now, now / then) < SEASON_GAP:
        return []
    h, year_ago = horizon_days, inputs.as_of - timedelta(days=365)
    return [f"a year ago the accounts then on the books brought {then:.2f}x their trailing "
            f"{h} days in the {h} days from {year_ago}; this run predicts {now:.2f}x the "
            f"trailing {h} days: if that season repeats, the predicted total is about "
            f"{now / then:.2f}x of what they will bring (a {h}-day horizon falls in a "
            "season that the models do not know; a 365-day one holds every season)"]


# A log whose last line is older than this before --as-of is likely an export that did
# not refresh: every account then looks idle (a monthly export is at most 31 days old).
STALE_LOG_DAYS = 31


def unused_learned_thresholds(bundle: KeyLTVModel, config: Config,
                              sources: dict[str, str]) -> list[str]:
    """Say where a threshold learned in training was passed over for the config's.

    It was learned for another precision target (see
    :func:`keyltv.scoring.score.scoring_flags`); said only where the scored accounts
    reach no threshold of their own, so that the config's fixed one is in use.
    """
    lines = []
    for threshold, (then, now) in other_learned_targets(bundle, config).items():
        if sources.get(threshold) != CONFIGURED:
            continue
        flag = next(f for f, (_, name, _) in THRESHOLDED_FLAGS.items() if name == threshold)
        lines.append(f"{flag}: no threshold on the accounts scored reaches precision {now:g}, "
                     f"and the model's learned threshold was for precision {then:g}: the "
                     f"config's {threshold} {getattr(config.flags, threshold):g} is used")
    return lines


def scoring_warnings(inputs: Inputs, bundle: KeyLTVModel, model_version: str,
                     notes: dict[str, int], previous: pd.Series | None,
                     config: Config) -> list[str]:
    """What an unattended scoring job must say although its output is valid, in words.

    A job that exits 0 on a stale export, a model from another time, an earlier file of
    another book or a log that lost its margins gives numbers that look fine and are
    not comparable with last month's.
    """
    lines = []
    stale = (inputs.as_of - inputs.log.last_date).days
    if stale > STALE_LOG_DAYS:
        # Counted as days_after_last_transaction is: the days in between, with no line.
        lines.append(f"the log ends {inputs.log.last_date}: the {stale - 1} days up to "
                     f"--as-of {inputs.as_of} have no line, and every account looks that "
                     "long idle; check that the export is complete")
    trained = getattr(bundle, "trained_as_of", None)
    if trained is not None and (inputs.as_of - trained).days > bundle.horizon_days:
        # Older than its own horizon: the model's world has moved on (retrain, see README).
        lines.append(f"model {model_version} was trained as of {trained}, "
                     f"{(inputs.as_of - trained).days} days before --as-of "
                     f"{inputs.as_of}: more than its {bundle.horizon_days}-day horizon")
    if trained is not None and inputs.as_of < trained:
        lines.append(f"model {model_version} was trained as of {trained}, after --as-of "
                     f"{inputs.as_of}: it learned from the period it now predicts")
    if notes.get("accounts_without_margins"):
        lines.append("the model was trained with margins and this log has none: tiers rank "
                     "by predicted value, and predicted_profit and low_margin_key are left out")
    if previous is not None and len(previous):
        shared = len(previous) - notes.get("previous_accounts_not_scored", 0)
        scored = notes.get("accounts_scored", 0)
        if shared < len(previous) / 2:
            lines.append(f"only {shared:,} of the {len(previous):,} accounts of --previous are "
                         "scored now (the others have no line before --as-of); check that "
                         "it scored the same book")
        if scored - shared > scored / 2:
            lines.append(f"{scored - shared:,} of the {scored:,} accounts scored now are not in "
                         "--previous and are marked new; check that it scored the same book")
        # Tier changes then mix what the accounts did with what the model changed.
        earlier_model = previous.attrs.get("model_version")
        earlier_run, run = previous.attrs.get("model_run_id"), getattr(bundle, "training_run_id",
                                                                         None)
        if earlier_model is not None and earlier_model != model_version:
            lines.append(f"--previous was scored by {earlier_model}, this run by "
                         f"{model_version}: tier changes mix account and model changes")
        elif None not in (earlier_run, run) and earlier_run != run:
            # The same name and number from another store (each project's first is /1).
            lines.append(f"--previous was scored by {earlier_model or 'a model'} of training "
                         f"run {earlier_run}, this run by {model_version} of training run "
                         f"{run}: tier changes mix account and model changes")
        earlier_rule = previous.attrs.get("tier_rule")
        rule = tier_rule(config.tiers)
        if earlier_rule is not None and earlier_rule != rule:
            lines.append(f"--previous tiered by {earlier_rule}, this run by {rule}: tier "
                         "changes compare two rules")
        earlier_basis = previous.attrs.get("ranked_by")
        basis = "value" if notes.get("accounts_without_margins") or bundle.margin_rate is None \
            else "profit"
        if earlier_basis is not None and earlier_basis != basis:
            lines.append(f"--previous ranked its tiers by predicted {earlier_basis}, this run "
                         f"by predicted {basis}: tier changes compare two rankings")
        earlier_h = previous.attrs.get("horizon_days")
        if earlier_h is not None and earlier_h != str(bundle.horizon_days):
            lines.append(f"--previous predicted a {earlier_h}-day horizon, this run a "
                         f"{bundle.horizon_days}-day one: its tiers rank another quantity")
    return lines


def score_report_html(result: ScoreResult, inputs: Inputs) -> str:
    """The self-contained HTML report of a scoring run."""
    return render_report(result.scores, title=f"keyltv key accounts as of {inputs.as_of}",
                         notes=result.notes, warnings=result.warnings,
                         previous_not_scored=result.previous_not_scored,
                         thresholds=result.flag_thresholds)


def write_score_report(result: ScoreResult, inputs: Inputs, path: str | Path) -> Path:
    """The self-contained HTML report of a scoring run, written atomically."""
    return write_report(score_report_html(result, inputs), path)


def publish_scores(store: Store, result: ScoreResult, inputs: Inputs, out: Path,
                   report: Path | None = None, previous: Path | None = None) -> str:
    """Record the scoring in MLflow, then write the score file (and the report).

    Everything goes to the store first, so a store that cannot take it (read-only,
    locked) stops the job before any file is replaced. SIGTERM is held from the first
    write to the end of the run (a few seconds): a job stopped by a scheduler then
    leaves either the earlier files or the new ones with their finished run, never new
    files beside a failed run. Each file is written atomically.

    A CSV score file counts, in ``result.notes``, the cells that it writes escaped for
    spreadsheets (``cells_escaped_for_spreadsheets``, see
    :func:`keyltv.data.outputs.escape_formulas`), before the notes are recorded and shown.

    Returns
    -------
    str
        The scoring run's id.
    """
    if Path(out).suffix.lower() == ".csv":  # Parquet keeps every value as it is
        result.notes["cells_escaped_for_spreadsheets"] = count_escaped_cells(result.scores)
    html = score_report_html(result, inputs) if report is not None else None
    with sigterm_held(), store.run("score", tags={"keyltv.job": "score"}) as run_id:
        log_scoring(store, result, out, inputs, html, previous)
        write_scores(result.scores, out)
        if report is not None:
            write_report(html, report)
    return run_id


def log_scoring(store: Store, result: ScoreResult, out: Path, inputs: Inputs,
                report_html: str | None = None, previous: Path | None = None) -> None:
    """Record a scoring in the active run: counts per tier, segment and flag, rows, sources."""
    scores = result.scores
    if report_html is not None:
        store.log_text(report_html, "report.html")
    store.log_params({"as_of": inputs.as_of, "model_version": result.model_version,
                      "output": str(Path(out).resolve()), "data_hash": inputs.log.fingerprint,
                      "transactions": inputs.log.source,
                      "transactions_path": inputs.log.source_path, "seed": result.seed,
                      "horizon_days": int(scores["horizon_days"].iloc[0]) if len(scores)
                      else None,
                      "previous": str(Path(previous).resolve()) if previous else None,
                      "tiers_hysteresis": result.tiers_hysteresis,
                      **{f"threshold_{k}": repr(float(v)) for k, (v, _) in
                         result.flag_thresholds.items()},
                      **{f"threshold_{k}_source": source for k, (_, source) in
                         result.flag_thresholds.items()}})
    # Every tier and segment, zeros included (a missing metric reads as "not measured"),
    # and the migrations when there is an earlier file.
    tiers, segments = scores["tier"].value_counts(), scores["segment"].value_counts()
    changes = scores["tier_change"].value_counts() if "tier_change" in scores else {}
    counts = {"input_lines": inputs.log.n_lines, "output_rows": len(scores),
              **{f"tier_{k}": int(tiers.get(k, 0)) for k in TIER_ORDER},
              **{f"segment_{k}": int(segments.get(k, 0)) for k in SEGMENTS},
              **{f"tier_change_{k}": int(changes.get(k, 0)) for k in ("up", "down", "same", "new")
                 if "tier_change" in scores},
              **{f"flag_{c}": int(scores[c].sum()) for c in
                 ("key_account", "at_risk", "high_potential", "low_margin_key")
                 if c in scores},
              **result.notes}
    store.log_metrics({k: float(v) for k, v in counts.items()})
    if result.warnings:
        store.log_dict({"warnings": result.warnings}, "warnings.json")


def write_scores(scores: pd.DataFrame, out: str | Path) -> Path:
    """Write the score table atomically (CSV or Parquet by extension)."""
    return write_table(scores, out)


def top_accounts(scores: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """The ``n`` accounts highest in what the tiers rank (profit with margins), for the console."""
    columns = ["customer_id", "tier", "segment", "predicted_value", "predicted_value_low",
               "predicted_value_high", "predicted_profit", "p_alive", "decline_risk",
               "growth_potential"]
    ranked = scores.loc[tier_basis(scores).nlargest(n).index]
    return ranked[[c for c in columns if c in scores.columns]].reset_index(drop=True)


def flag_counts(scores: pd.DataFrame) -> pd.Series:
    """Number of accounts per flag and per segment."""
    flags = [c for c in ("key_account", "at_risk", "high_potential", "low_margin_key")
             if c in scores]
    return pd.concat([scores[flags].sum().astype(int),
                      scores["segment"].value_counts().rename(lambda s: f"segment={s}")])

