"""The jobs behind the CLI: train, score and demo, each one function.

They wire the packages together in data-flow order (load -> features -> models ->
evaluation -> tracking -> scoring) and hold no modelling logic of their own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from keyltv import __version__
from keyltv.config import Config
from keyltv.data.outputs import write_table
from keyltv.data.schema import InputError, as_date, redact_uri
from keyltv.evaluation.backtest import (
    BLEND,
    MIN_HISTORY_DAYS,
    BacktestResult,
    OriginResult,
    evaluate_origin,
    learn_flag_thresholds,
    rolling_origins,
    select_champion,
    validation_horizon,
)
from keyltv.evaluation.metrics import HIGHER_IS_BETTER
from keyltv.evaluation.review import backtest_figures, explained_model, whose_importance
from keyltv.features import account_features, with_attributes
from keyltv.features.accounts import ATTRIBUTE_PREFIX, margin_day_moments
from keyltv.inputs import Inputs, feature_table, load_inputs  # noqa: F401 (jobs' API)
from keyltv.models.blend import BlendedLTV, components_of
from keyltv.models.bundle import (
    KeyLTVModel,
    TrainingData,
    book_margin_rate,
    book_medians,
    fit_event_models,
    fit_value_model,
    margin_credibility,
    training_data,
)
from keyltv.models.interval import BandedIntervals
from keyltv.scoring.report import render_report, write_report
from keyltv.scoring.rules import (
    SEGMENTS,
    THRESHOLDED_FLAGS,
    TIER_ORDER,
    assign_tiers,
    crowded_flags,
    silent_flags,
    tier_basis,
)
from keyltv.scoring.score import (
    comparable_previous,
    count_unseen_levels,
    read_previous,
    score_accounts,
    scoring_flags,
)
from keyltv.tracking.store import (
    Store,
    check_store_exists,
    connect,
    load_bundle,
    resolve_tracking_uri,
    sigterm_held,
)

log = logging.getLogger("keyltv")


def open_store(config: Config, project_dir: Path | None = None, existing: bool = False) -> Store:
    """Connect to the tracking store (see :func:`keyltv.tracking.store.resolve_tracking_uri`).

    ``project_dir`` is an explicit ``--project-dir``: its store wins over the
    environment and the config. Artifacts go to ``mlartifacts`` in that folder (the
    working directory without it). With ``existing`` (a job that loads a registered
    model), a SQLite store that does not exist is refused instead of created.
    """
    uri = resolve_tracking_uri(config.tracking.uri, project_dir)
    if existing:
        check_store_exists(uri)
    folder = Path.cwd() if project_dir is None else Path(project_dir)
    log.info("MLflow store %s", redact_uri(uri))
    return connect(uri, config.tracking.experiment, config.tracking.model_name,
                   artifact_root=folder / "mlartifacts")


@dataclass
class TrainResult:
    """What ``train`` did: the backtest, the champion, the run and the registry version."""

    backtest: BacktestResult
    champion: str
    run_id: str
    version: str
    promoted: bool
    reason: str
    flag_thresholds: dict[str, float] = field(default_factory=dict)


def train(inputs: Inputs, config: Config, store: Store) -> TrainResult:
    """Backtest every model inside the history, refit the winner at ``as_of``, register it.

    The holdout is the last half horizon before ``as_of`` (see
    :func:`~keyltv.evaluation.backtest.validation_horizon`): models are fitted on what
    came before it and judged on it; the champion is then refitted on all the history.
    """
    h = config.horizon_days
    check_trainable(inputs, config)
    log.info("selection backtest before %s on %d accounts, seed %d", inputs.as_of,
             inputs.log.n_accounts, config.seed)
    result, champion = select_champion(inputs.log, inputs.as_of, config, inputs.accounts)
    data = training_data(inputs.log, inputs.as_of, config, inputs.accounts)
    bundle = fit_bundle(inputs, config, champion, result, data)
    with store.run("train", tags={"keyltv.job": "train"}) as run_id:
        train_hash = training_fingerprint(inputs)  # one scan of the log, for param and tag
        _log_training(store, run_id, inputs, config, result, champion, train_hash)
        store.log_params({f"learned_{k}": v for k, v in bundle.flag_thresholds.items()})
        # Every threshold and where it came from, as train prints it.
        store.log_params({"flag_thresholds": flag_threshold_summary(bundle.flag_thresholds,
                                                                    config)})
        if bundle.margin_credibility is not None:  # how far own margin rates are trusted
            store.log_params({"margin_credibility": bundle.margin_credibility})
        store.log_metrics({"interval_holdout_coverage": bundle.intervals.holdout_coverage_})
        example = bundle_example(bundle, inputs, config, features=data.current)
        tags = {
            # Not "champion": every version carries it, promoted or not, and the UI
            # showed "champion: blend" on versions that never held @champion.
            "value_model": champion,
            "metric": config.selection.metric,
            "metric_value": repr(float(result.table.loc[champion, config.selection.metric])),
            "data_hash": inputs.log.fingerprint,
            "train_data_hash": train_hash,
            "horizon_days": str(h),
            "trained_as_of": inputs.as_of.isoformat(),
        }
        version = store.log_bundle(bundle, example, tags)
        promoted, reason = _gate(store, tags, config, result.table)
        store.log_dict({"version": version, "promoted": promoted, "reason": reason},
                       "registry.json")
        # The decision on the run page and the version page, where a reviewer looks.
        decision = (f"**Registry:** version {version}, "
                    f"{'now @champion' if promoted else 'not promoted'}: {reason}")
        store.set_description(training_summary(result, champion, config.selection.metric)
                              + "\n\n" + decision)
        store.log_params({"registered_version": version, "promoted": promoted})
        store.describe_version(version, decision)
    if promoted:
        earlier = store.champion_version()
        store.set_champion(version)
        if earlier is not None:
            store.mark_superseded(earlier, version)
    else:
        store.set_version_tag(version, "not_promoted", reason)
    return TrainResult(result, champion, run_id, version, promoted, reason, bundle.flag_thresholds)


# Fewer accounts cannot be ranked, banded into intervals or split into events.
MIN_TRAIN_ACCOUNTS = 10


def check_trainable(inputs: Inputs, config: Config) -> None:
    """Refuse, with the reason, a log that no model can learn from (instead of a crash).

    Raises
    ------
    InputError
        ``as_of`` after the day following the last transaction, fewer than
        :data:`MIN_TRAIN_ACCOUNTS` accounts before it, no account with a repeat order,
        or no value in the selection holdout.
    """
    source, as_of = inputs.log.source, inputs.as_of
    end = inputs.log.last_date + timedelta(days=1)
    if as_of > end:
        # Models are judged on the days just before as_of: days the log does not reach
        # would count as days without orders, and every account would look lost.
        raise InputError(f"{source}: --as-of {as_of} is after the log's last transaction "
                         f"({inputs.log.last_date}); train judges models on the days before "
                         f"--as-of, so use --as-of {end} or earlier")
    accounts, repeaters = inputs.log.con.execute(
        "SELECT count(*), count(*) FILTER (WHERE orders > 1) FROM (SELECT customer_id, "
        "count(*) FILTER (WHERE amount > 0) AS orders FROM daily WHERE day < ? GROUP BY ALL)",
        [as_of]).fetchall()[0]
    if accounts < MIN_TRAIN_ACCOUNTS:
        raise InputError(f"{source}: {accounts} account(s) before {as_of}; train needs at least "
                         f"{MIN_TRAIN_ACCOUNTS}; score them with an existing model instead")
    if repeaters == 0:
        raise InputError(f"{source}: no account ordered on more than one day before {as_of}; "
                         "with no repeat purchase there is no future value to learn from")
    try:
        cutoff = as_of - timedelta(days=validation_horizon(inputs.log.first_date, as_of, config))
    except InputError as exc:
        raise InputError(f"{source}: {exc}") from None
    held_out = inputs.log.con.execute(
        "SELECT COALESCE(sum(amount), 0) FROM daily WHERE day >= ? AND day < ? AND customer_id "
        "IN (SELECT customer_id FROM daily WHERE day < ?)", [cutoff, as_of, cutoff]
    ).fetchall()[0][0]
    if held_out <= 0:
        raise InputError(f"{source}: accounts seen before {cutoff} bought nothing from {cutoff} "
                         f"to {as_of}; the backtest has no value to judge models on")


# Source of expected orders and P(alive) in every score file, whatever the champion.
COMPANION = "mbgnbd"


def fit_bundle(inputs: Inputs, config: Config, champion: str, result: BacktestResult,
               data: TrainingData | None = None) -> KeyLTVModel:
    """Refit the champion and its companions on all history before ``as_of``.

    ``data`` is the training cut at ``as_of`` when the caller already made it.
    """
    if data is None:
        data = training_data(inputs.log, inputs.as_of, config, inputs.accounts)
    try:
        probabilistic = fit_value_model(COMPANION, data, config)
    except ValueError as exc:
        # No repeat buyer: orders and P(alive) use the documented fallback.
        log.warning("%s cannot be fitted at %s (%s); predicted_orders and p_alive use "
                    "the fallback", COMPANION, inputs.as_of, exc)
        probabilistic = None
    value_model = _fit_champion(champion, data, config, result, probabilistic)
    intervals = BandedIntervals().fit(result.predictions[champion], result.predictions["actual"])
    return KeyLTVModel(
        champion=champion,
        value_model=value_model,
        probabilistic=probabilistic,
        events=fit_event_models(data, config),
        intervals=intervals,
        horizon_days=config.horizon_days,
        trained_as_of=inputs.as_of,
        feature_columns=list(data.current.columns),
        margin_rate=book_margin_rate(data.current),
        margin_credibility=margin_credibility(margin_day_moments(inputs.log, inputs.as_of)),
        book_medians=book_medians(data.current),
        metrics={k: float(v) for k, v in result.table.loc[champion].items()},
        flag_thresholds=learn_flag_thresholds(result, champion, config),
    )


def _fit_champion(champion: str, data: TrainingData, config: Config, result: BacktestResult,
                  companion: object | None) -> object:
    """The champion refitted at ``as_of``: one model, or every weighted part of the blend."""
    def fit(name: str) -> object:
        return companion if name == COMPANION and companion is not None else \
            fit_value_model(name, data, config)

    if champion != BLEND:
        return fit(champion)
    return BlendedLTV({name: fit(name) for name in components_of(result.blend_weights)},
                      result.blend_weights)


def bundle_example(bundle: KeyLTVModel, inputs: Inputs, config: Config,
                   features: pd.DataFrame | None = None) -> pd.DataFrame:
    """Five feature rows (customer_id as a column) for the pyfunc signature and example.

    ``features``: the features at ``as_of`` when the caller has them (on a million
    accounts, computing them again takes longer than logging the model).
    """
    if features is None:
        features = with_attributes(
            account_features(inputs.log, inputs.as_of, config.horizon_days), inputs.accounts
        )
    return features[bundle.feature_columns].head(5).rename_axis("customer_id").reset_index()


def _log_training(store: Store, run_id: str, inputs: Inputs, config: Config,
                  result: BacktestResult, champion: str, train_hash: str) -> None:
    """Parent run: config, data fingerprint, backtest table; one child run per model."""
    store.log_params({"as_of": inputs.as_of, "horizon_days": config.horizon_days,
                      "seed": config.seed, "champion": champion,
                      "selection_metric": config.selection.metric,
                      "backtest_cutoff": result.cutoff,
                      "training_cutoffs": ",".join(map(str, result.data.cutoffs)),
                      "training_rows_sampled_out": result.data.sampled,
                      # What the run was made with, and what it learned from (the data_*
                      # params describe the whole file, lines after as_of included).
                      "keyltv_version": __version__,
                      "train_data_hash": train_hash,
                      **{f"data_{k}": v for k, v in inputs.log.summary().items()}})
    store.log_metrics(result.table.loc[champion].to_dict(), prefix="champion_")
    for name in result.table.index:
        store.log_metrics({k: result.table.loc[name, k] for k in ("normalized_gini", "spearman")},
                          prefix=f"{name}_")
    store.set_description(training_summary(result, champion, config.selection.metric))
    store.log_metrics(result.event_metrics)
    store.log_dict(_public_config(config), "config.yaml")
    store.log_dict({**inputs.log.summary(), **inputs.notes}, "data_fingerprint.json")
    store.log_table(result.table, "backtest", caption=(
        f"Every model fitted on data before {result.cutoff}, judged on the "
        f"{result.horizon_days} days from it ({inputs.log.source}); champion by "
        f"{config.selection.metric}: {champion}. The registered model is refitted on all "
        f"data before {inputs.as_of} for a {config.horizon_days}-day horizon."))
    store.log_dict(result.skipped, "skipped_models.json")
    for name, figure in backtest_figures(result, champion).items():
        store.log_figure(figure, f"plots/{name}")
    for name, model in result.models.items():
        with store.run(name, parent_id=run_id, tags={"keyltv.model": name}):
            params = model.tracking_params() if isinstance(model, BlendedLTV) else \
                model.get_params()
            store.log_params({k: v for k, v in params.items()
                              if isinstance(v, (int, float, str, bool))})
            store.log_metrics(result.table.loc[name].to_dict())
            fitted = getattr(model, "params_", None)
            if isinstance(fitted, dict):
                store.log_metrics(fitted, prefix="param_")
            if hasattr(model, "n_trees_"):  # n_estimators is only the early-stopping cap
                store.log_params({"n_trees": model.n_trees_})


def _public_config(config: Config) -> dict[str, object]:
    """Dump the config for logging, without a password or token in the tracking URI."""
    data = config.model_dump(mode="json")
    if data.get("tracking", {}).get("uri"):
        data["tracking"]["uri"] = redact_uri(data["tracking"]["uri"])
    return data


def training_summary(result: BacktestResult, champion: str, metric: str) -> str:
    """Markdown for the run page: who won, by how much against the peers, and why."""
    table = result.table
    peers = [m for m in ("trailing", "bgnbd", "pareto") if m in table.index and m != champion]
    lines = [f"**Champion: {champion}** (by {metric}, backtest fitted before {result.cutoff}, "
             f"judged on the next {result.horizon_days} days, {len(result.predictions)} accounts)",
             ""]
    better = "higher" if HIGHER_IS_BETTER[metric] > 0 else "lower"
    for peer in peers:
        gain = HIGHER_IS_BETTER[metric] * (table.loc[champion, metric] - table.loc[peer, metric])
        lines.append(f"- vs {peer}: {metric} {table.loc[champion, metric]:.4f} vs "
                     f"{table.loc[peer, metric]:.4f} ({signed(gain)}; {better} is better)")
    if champion == BLEND:
        parts = ", ".join(f"{m} x {w:.3g}" for m, w in result.blend_weights.items())
        lines += ["", f"Blend weights (fitted on this holdout; its metrics are 5-fold "
                      f"cross-fitted over accounts): {parts}"]
    explained = explained_model(result, champion)
    if explained is not None:
        name, (names, gains) = explained
        top = [names[i] for i in np.argsort(gains)[::-1][:5]]
        lines += ["", f"Top drivers (gain of {whose_importance(result, champion, name)}): "
                      f"{', '.join(top)}"]
    for name, why in result.skipped.items():
        lines.append(f"- not eligible: {name} ({why})")
    lines += ["", "Plots under `plots/`, the full table in `backtest.html`."]
    return "\n".join(lines)


def signed(gain: float) -> str:
    """A metric's gain with its sign, in enough digits to tell it from a tie.

    >>> signed(0.01234), signed(-0.00002), signed(0.0)
    ('+0.0123', '-2.0e-05', '+0.0000')
    """
    if gain != 0 and abs(gain) < 5e-5:
        return f"{gain:+.1e}"
    return f"{gain:+.4f}"


def flag_threshold_summary(learned: dict[str, float], cfg: Config) -> str:
    """Each thresholded flag's threshold and where it came from, in one line.

    A learned threshold is printed exactly (``repr``): rounded, it can put an account
    whose score lies between the two on the wrong side of a recount.
    """
    parts = []
    for score_name, name, target in THRESHOLDED_FLAGS.values():
        precision = getattr(cfg.flags, target)
        if name in learned:
            parts.append(f"{name}={float(learned[name])!r} (learned: precision "
                         f"{precision} among valuable accounts in the backtest)")
        elif precision is None:
            parts.append(f"{name}={getattr(cfg.flags, name)} (the config's; no precision "
                         "target)")
        else:
            parts.append(f"{name}={getattr(cfg.flags, name)} (the config's: no "
                         f"{score_name} threshold reached precision {precision} in the "
                         "backtest)")
    return "; ".join(parts)


def training_fingerprint(inputs: Inputs) -> str:
    """Hash of what a training at ``inputs.as_of`` learns from.

    The log's days before ``as_of`` and the account table's values (in any row order).
    """
    parts = inputs.log.fingerprint_before(inputs.as_of)
    if inputs.accounts is not None:
        rows = pd.util.hash_pandas_object(inputs.accounts, index=True).to_numpy()
        parts += f"-{int(rows.sum(dtype=np.uint64)):016x}"  # wraps: order-independent
    return parts


def _gate(store: Store, tags: dict[str, str], config: Config,
          table: pd.DataFrame | None = None) -> tuple[bool, str]:
    """Move ``@champion`` only if the new model beats it on the primary backtest metric.

    Metrics of two backtests compare only on the same holdout: the same training data
    (``train_data_hash``: the log before ``as_of`` and the account table) cut at the same
    ``as_of``, judged by the same metric. Otherwise the champion's kind
    of model (its ``value_model`` tag: ``hybrid``, ``blend``...) was refitted in this
    backtest, and the new model must beat that row of ``table``; a champion of the
    same kind is replaced by its refit on newer or corrected data (the same model,
    fresher). A champion trained
    for another horizon predicts something else: it is replaced. In every case the
    gain must be positive (a tie keeps the champion) and at least
    ``selection.min_improvement``. A model trained as of an earlier day than the
    champion (a backfill) never replaces it. When the champion's kind is not in this
    backtest (a run of fewer models), its recorded metric from its own backtest is the
    bar, and the reason says that it comes from a different backtest.
    """
    current = store.champion_version()
    if current is None:
        return True, "no earlier version held @champion"
    old, metric = current.tags, tags["metric"]
    # ISO dates compare as text. A model of older data (a backfill, a rerun of an earlier
    # month) never takes the alias from one trained on later data, whatever its kind or
    # horizon: the scheduled jobs score the present.
    if tags["trained_as_of"] < old.get("trained_as_of", ""):
        return False, (f"version {current.version} was trained on later data "
                       f"({old.get('trained_as_of')}) than this model ({tags['trained_as_of']}); "
                       f"@champion stays on version {current.version}")
    if old.get("horizon_days") != tags["horizon_days"]:
        return True, (f"version {current.version} predicts another horizon "
                      f"({old.get('horizon_days')} days); replaced")
    sign = HIGHER_IS_BETTER[metric]
    new_value = float(tags["metric_value"])
    # The training data's hash where both versions carry it; a version registered before
    # it existed has only the whole file's.
    key = "train_data_hash" if "train_data_hash" in old and "train_data_hash" in tags \
        else "data_hash"
    same_holdout = (old.get(key) == tags.get(key)
                    and old.get("trained_as_of") == tags["trained_as_of"])
    # Versions registered before the tag was renamed carry it as "champion".
    kind = old.get("value_model", old.get("champion"))
    if same_holdout and old.get("metric") == metric:
        old_value = float(old["metric_value"])
        against = f"version {current.version} ({old_value:.4f}, same backtest)"
    elif table is not None and kind in table.index:
        if kind == tags["value_model"] and not same_holdout:
            # Newer (or corrected) data replaces the champion (older data stopped above).
            return True, (f"version {current.version} is the same kind of model ({kind}); "
                          f"refitted on newer data ({tags['trained_as_of']}), it replaces it")
        old_value = float(table.loc[kind, metric])
        against = (f"{kind}, version {current.version}'s kind, refitted in this backtest "
                   f"({old_value:.4f})")
    elif old.get("metric") == metric:
        old_value = float(old["metric_value"])
        against = f"version {current.version} ({old_value:.4f}, on a different backtest)"
    else:
        return True, (f"version {current.version} was judged by {old.get('metric')} and its "
                      f"kind ({kind}) is not in this backtest; replaced")
    gain = sign * (new_value - old_value)
    if gain > 0 and gain >= config.selection.min_improvement:
        return True, f"{metric} {new_value:.4f} beats {against}: {signed(gain)}"
    return False, (f"{metric} {new_value:.4f} does not beat {against} by at least "
                   f"selection.min_improvement={config.selection.min_improvement} "
                   f"({signed(gain)}); @champion stays on version {current.version}")


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
    features = with_attributes(
        account_features(inputs.log, inputs.as_of, bundle.horizon_days), inputs.accounts
    )
    accounts_source = inputs.accounts.attrs.get("source") if inputs.accounts is not None else None
    prev, prev_value = read_previous(previous) if previous is not None else (None, None)
    # score_accounts checks the inputs and the earlier file, naming these sources.
    scores = score_accounts(bundle, features, as_of=inputs.as_of, model_version=model_version,
                            config=config, previous=prev, source=inputs.log.source,
                            accounts_source=accounts_source, previous_source=str(previous),
                            previous_value=prev_value)
    notes = {**inputs.notes, "attribute_values_unseen_in_training":
             count_unseen_levels(bundle, features), "accounts_scored": len(scores)}
    lost: dict[str, int] = {}
    band = config.tiers.hysteresis if prev_value is not None and comparable_previous(
        prev, scores, model_version, bundle.horizon_days) else 0.0
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
    if bundle.margin_rate is None and margins:
        notes["margins_unused_by_model"] = margins  # accounts whose margins it cannot use
    if inputs.accounts is not None and not any(c.startswith(ATTRIBUTE_PREFIX)
                                               for c in bundle.feature_columns):
        # The model was trained without attributes: the table given changes nothing.
        notes["account_attributes_unused"] = inputs.accounts.shape[1]
    flags = scoring_flags(bundle, config)
    learned = frozenset(k for k, v in getattr(bundle, "flag_thresholds", {}).items()
                        if getattr(flags, k) == v)
    warnings = silent_flags(scores, flags) + crowded_flags(scores, flags, learned) + \
        scoring_warnings(inputs, bundle, model_version, notes, prev)
    return ScoreResult(scores, model_version, notes, config.seed, warnings, lost, band)


# A log whose last line is older than this before --as-of is likely an export that did
# not refresh: every account then looks idle (a monthly export is at most 31 days old).
STALE_LOG_DAYS = 31


def scoring_warnings(inputs: Inputs, bundle: KeyLTVModel, model_version: str,
                     notes: dict[str, int], previous: pd.Series | None = None) -> list[str]:
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
        if earlier_model is not None and earlier_model != model_version:
            lines.append(f"--previous was scored by {earlier_model}, this run by "
                         f"{model_version}: tier changes mix account and model changes")
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


def evaluate(inputs: Inputs, config: Config, last_origin: date) -> list[OriginResult]:
    """Nested evaluation at ``last_origin`` and ``backtest.n_origins - 1`` earlier ones."""
    last_origin = as_date(last_origin, "cutoff")
    origins = rolling_origins(last_origin, config.backtest.n_origins, config.backtest.step_days)
    # The origins step back from --cutoff: name the option, not an origin the user never gave.
    history = (origins[0] - inputs.log.first_date).days
    if history < MIN_HISTORY_DAYS:
        raise InputError(
            f"{inputs.log.source}: --cutoff {last_origin}: its earliest origin, {origins[0]} "
            f"({len(origins)} origins, backtest.step_days {config.backtest.step_days} apart), "
            f"leaves {max(history, 0)} days of history after the first transaction "
            f"({inputs.log.first_date}); {MIN_HISTORY_DAYS} are needed: use a later "
            "--cutoff or fewer backtest.n_origins")
    return [evaluate_origin(inputs.log, origin, config, inputs.accounts) for origin in origins]



def evaluation_json(results: list[OriginResult]) -> dict[str, object]:
    """Plain-JSON form of an evaluation, for ``keyltv evaluate --out``."""
    def clean(value: object) -> object:
        return None if isinstance(value, float) and not np.isfinite(value) else value

    return {
        str(r.origin): {
            "champion": r.champion,
            "interval_coverage": r.coverage,
            "models": {m: {k: clean(float(v)) for k, v in row.items()}
                       for m, row in r.table.drop(columns=["origin", "champion"]).iterrows()},
            "events": {k: clean(v) for k, v in r.outer.event_metrics.items()},
            "flags": {k: clean(v) for k, v in r.flags.items()},
            "skipped": r.outer.skipped,
        }
        for r in results
    }


def score_report_html(result: ScoreResult, inputs: Inputs) -> str:
    """The self-contained HTML report of a scoring run."""
    return render_report(result.scores, title=f"keyltv key accounts as of {inputs.as_of}",
                         notes=result.notes, warnings=result.warnings,
                         previous_not_scored=result.previous_not_scored)


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

    Returns
    -------
    str
        The scoring run's id.
    """
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
                      "transactions": inputs.log.source, "seed": result.seed,
                      "previous": str(Path(previous).resolve()) if previous else None,
                      "tiers_hysteresis": result.tiers_hysteresis})
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
    """The ``n`` accounts with the highest predicted value, for the console."""
    columns = ["customer_id", "tier", "segment", "predicted_value", "predicted_value_low",
               "predicted_value_high", "p_alive", "decline_risk", "growth_potential"]
    return scores.nlargest(n, "predicted_value")[columns].reset_index(drop=True)


def flag_counts(scores: pd.DataFrame) -> pd.Series:
    """Number of accounts per flag and per segment."""
    flags = [c for c in ("key_account", "at_risk", "high_potential", "low_margin_key")
             if c in scores]
    return pd.concat([scores[flags].sum().astype(int),
                      scores["segment"].value_counts().rename(lambda s: f"segment={s}")])

