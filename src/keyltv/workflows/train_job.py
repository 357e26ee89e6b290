"""The train job: backtest every model, refit the champion at ``as_of``, register it.

Whether the registered version takes ``@champion`` is
:func:`keyltv.workflows.gate.champion_gate`'s decision.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from keyltv import __version__
from keyltv.config import Config
from keyltv.data.schema import redact_uri
from keyltv.evaluation.backtest import BLEND, BacktestResult, select_champion
from keyltv.evaluation.flags import learn_flag_thresholds
from keyltv.evaluation.metrics import HIGHER_IS_BETTER
from keyltv.evaluation.review import backtest_figures, explained_model, whose_importance
from keyltv.features import account_features, with_attributes
from keyltv.features.accounts import margin_day_moments
from keyltv.features.attributes import id_like_attributes
from keyltv.inputs import Inputs, ignored_attributes
from keyltv.models.blend import BlendedLTV, components_of
from keyltv.models.bundle import KeyLTVModel, book_margin_rate, book_medians, margin_credibility
from keyltv.models.interval import BandedIntervals
from keyltv.models.training import TrainingData, fit_event_models, fit_value_model, training_data
from keyltv.scoring.rules import THRESHOLDED_FLAGS, precision_targets
from keyltv.tracking.store import Store
from keyltv.workflows.gate import champion_gate, signed
from keyltv.workflows.guards import check_trainable

log = logging.getLogger("keyltv")


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
    ignored_attributes(inputs, config)  # said once here; every fit below leaves them out
    log.info("selection backtest before %s on %d accounts, seed %d", inputs.as_of,
             inputs.log.n_accounts, config.seed)
    result, champion = select_champion(inputs.log, inputs.as_of, config, inputs.accounts)
    data = training_data(inputs.log, inputs.as_of, config, inputs.accounts)
    bundle = fit_bundle(inputs, config, champion, result, data)
    with store.run("train", tags={"keyltv.job": "train"}) as run_id:
        train_hash = training_fingerprint(inputs)  # one scan of the log, for param and tag
        _log_training(store, run_id, inputs, config, result, champion, train_hash, data)
        store.log_params({f"learned_{k}": v for k, v in bundle.flag_thresholds.items()})
        # Every threshold and where it came from, as train prints it.
        store.log_params({"flag_thresholds": flag_threshold_summary(bundle.flag_thresholds,
                                                                    config)})
        if bundle.margin_credibility is not None:  # how far own margin rates are trusted
            store.log_params({"margin_credibility": bundle.margin_credibility})
        if bundle.ignored_attributes:  # the account-table columns no model reads, and why
            store.log_dict(bundle.ignored_attributes, "ignored_attributes.json")
        store.log_metrics({"interval_holdout_coverage": bundle.intervals.holdout_coverage_})
        bundle.training_run_id = run_id  # in every score file it makes (model_run_id)
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
        promoted, reason = champion_gate(store, tags, config, result.table, version)
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
        decline_ratio=config.events.decline_ratio,
        trained_as_of=inputs.as_of,
        feature_columns=list(data.current.columns),
        margin_rate=book_margin_rate(data.current),
        margin_credibility=margin_credibility(margin_day_moments(inputs.log, inputs.as_of)),
        book_medians=book_medians(data.current),
        metrics={k: float(v) for k, v in result.table.loc[champion].items()},
        flag_thresholds=learn_flag_thresholds(result, champion, config),
        flag_targets=precision_targets(config.flags),
        ignored_attributes=id_like_attributes(inputs.accounts, config.account_text_columns),
        account_text_columns=tuple(config.account_text_columns),
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
                      result.blend_weights, result.blend_idle_days)


def bundle_example(bundle: KeyLTVModel, inputs: Inputs, config: Config,
                   features: pd.DataFrame | None = None) -> pd.DataFrame:
    """Five feature rows (customer_id as a column) for the pyfunc signature and example.

    ``features``: the features at ``as_of`` when the caller has them (on a million
    accounts, computing them again takes longer than logging the model).
    """
    if features is None:
        features = with_attributes(
            account_features(inputs.log, inputs.as_of, config.horizon_days), inputs.accounts,
            inputs.as_of)
    return features[bundle.feature_columns].head(5).rename_axis("customer_id").reset_index()


def _log_training(store: Store, run_id: str, inputs: Inputs, config: Config,
                  result: BacktestResult, champion: str, train_hash: str,
                  data: TrainingData) -> None:
    """Parent run: config, data fingerprint, backtest table; one child run per model.

    ``data`` is what the deployed refit learned from: its cutoffs and sampling are the
    ``training_*`` params (they were the selection backtest's, a day apart and with
    another sample count; audit 29), the backtest's are ``backtest_training_*``.
    """
    store.log_params({"as_of": inputs.as_of, "horizon_days": config.horizon_days,
                      "seed": config.seed, "champion": champion,
                      "selection_metric": config.selection.metric,
                      "backtest_cutoff": result.cutoff,
                      "training_cutoffs": ",".join(map(str, data.cutoffs)),
                      "training_rows_sampled_out": data.sampled,
                      "backtest_training_cutoffs": ",".join(map(str, result.data.cutoffs)),
                      "backtest_training_rows_sampled_out": result.data.sampled,
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


def flag_threshold_summary(learned: dict[str, float], cfg: Config) -> str:
    """Each thresholded flag's threshold and where it will come from, in one line.

    With a precision target, scoring sets the threshold on the accounts it scores
    (:func:`keyltv.scoring.rules.resolve_thresholds`); the threshold printed here is
    the one used where that reaches no target. A learned threshold is printed exactly
    (``repr``): rounded, it can put an account whose score lies between the two on the
    wrong side of a recount.
    """
    parts = []
    for score_name, name, target in THRESHOLDED_FLAGS.values():
        precision = getattr(cfg.flags, target)
        if precision is None:
            parts.append(f"{name}={getattr(cfg.flags, name)} (the config's; no precision "
                         "target)")
            continue
        at_scoring = f"{name}: set at scoring for an expected precision of {precision}, else "
        if name in learned:
            parts.append(f"{at_scoring}{float(learned[name])!r} (learned: precision "
                         f"{precision} among valuable accounts in the backtest)")
        else:
            parts.append(f"{at_scoring}{getattr(cfg.flags, name)} (the config's: no "
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
