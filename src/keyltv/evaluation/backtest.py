"""Time-based backtests: fit every model on data before a cutoff, score the next horizon.

Each model only sees transactions before the cutoff (the supervised ones learn from
earlier cutoffs inside that history), and is judged on the realized value of the
accounts known at the cutoff over ``[cutoff, cutoff + horizon)``. Peers run in the same
call on the same accounts, so every row of the table is comparable.

The champion is selected here (:func:`select_champion`); the nested evaluation that
also judges it after each origin is in :mod:`keyltv.evaluation.origins`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd

from keyltv.config import MODEL_NAMES, Config
from keyltv.data.schema import InputError, as_date
from keyltv.data.transactions import TransactionLog
from keyltv.evaluation.metrics import (
    HIGHER_IS_BETTER,
    auc,
    value_metrics,
)
from keyltv.features import future_values
from keyltv.models.blend import (
    BlendedLTV,
    blend,
    blend_columns,
    blend_weights,
    can_stratify,
    components_of,
    cross_fitted_blend,
    is_stratified,
    stratify,
)
from keyltv.models.bundle import fallback_events
from keyltv.models.training import (
    TrainingData,
    event_labels,
    fit_event_models,
    fit_value_model,
    training_data,
)


@dataclass
class BacktestResult:
    """Outcome of one backtest cutoff.

    Attributes
    ----------
    cutoff : datetime.date
        The models saw transactions before it; they are judged on
        ``[cutoff, cutoff + horizon_days)``.
    horizon_days : int
        Length of that evaluation window (the config's horizon, or the shorter
        validation horizon of :func:`select_champion`).
    table : pandas.DataFrame
        One row per fitted model (index ``model``, in the order fitted): the columns of
        :func:`~keyltv.evaluation.metrics.value_metrics` and ``fit_seconds``. After
        :func:`add_blend` or :func:`apply_blend`, also a ``blend`` row (``fit_seconds``
        the sum of its parts').
    predictions : pandas.DataFrame
        One row per account seen before ``cutoff`` (index ``customer_id``): ``actual``
        (net value in the window), ``actual_orders`` (order days in the window: days
        with a positive net amount), ``trailing_value`` (net value over the horizon
        before ``cutoff``), one column of predicted value per fitted model, and
        ``blend`` when a blend was added.
    events : pandas.DataFrame
        Same rows: the realized ``decline`` and ``growth`` events (bool); ``p_alive``
        when MBG/NBD could be fitted; ``decline_risk`` and ``growth_potential`` from the
        event classifiers, or their fallback, when either exists.
    event_metrics : dict of str to float
        AUCs of the event scores: ``decline_auc`` and ``growth_auc`` (when scored),
        ``decline_auc_1_minus_p_alive`` (BG/NBD's peer, when ``bgnbd`` was fitted),
        ``p_alive_auc_orders_again``; the decline AUCs only over accounts with
        trailing value, NaN when there are none or with one class. Also
        ``event_classifiers`` (1.0, or 0.0 for the fallback scores), ``decline_rate``
        and ``growth_rate``.
    skipped : dict of str to str
        Models that could not be fitted, with the reason (the ValueError's message).
    models : dict of str to object
        The fitted models by name, ``blend`` (a
        :class:`~keyltv.models.blend.BlendedLTV`) included after :func:`add_blend`.
    data : TrainingData
        The training cut, reused by callers (no recomputation).
    blend_weights : dict of str to float
        Weight per model (or ``<model>.<stratum>``) of the blend: fitted on the whole
        holdout by :func:`add_blend`, or the weights given to :func:`apply_blend`;
        empty without a blend.
    blend_idle_days : int or None
        With weights per stratum, the days without an order that make an account
        ``idle`` (:func:`keyltv.models.blend.stratify`); None otherwise.
    """

    cutoff: date
    horizon_days: int
    table: pd.DataFrame
    predictions: pd.DataFrame
    events: pd.DataFrame
    event_metrics: dict[str, float]
    skipped: dict[str, str] = field(default_factory=dict)
    models: dict[str, object] = field(default_factory=dict, repr=False)
    data: TrainingData | None = field(default=None, repr=False)
    blend_weights: dict[str, float] = field(default_factory=dict)
    blend_idle_days: int | None = None


def backtest(
    log: TransactionLog,
    cutoff: date,
    config: Config,
    accounts: pd.DataFrame | None = None,
    models: tuple[str, ...] | None = None,
    deployed_horizon_days: int | None = None,
) -> BacktestResult:
    """Fit ``models`` (default: the config's) before ``cutoff`` and evaluate after it.

    ``deployed_horizon_days``: the horizon of the predictor this backtest selects for,
    when it is not ``config.horizon_days`` (see
    :func:`keyltv.models.training.full_window_days`).

    Raises
    ------
    InputError
        If the log does not cover the whole evaluation window.
    """
    cutoff = as_date(cutoff, "cutoff")
    names = models or config.models
    unknown = [m for m in names if m not in MODEL_NAMES]
    if unknown:  # here, not in the loop below, which takes a ValueError as "cannot fit"
        raise InputError(f"models: unknown model {unknown[0]!r}; allowed: "
                         f"{', '.join(MODEL_NAMES)}")
    h = config.horizon_days
    end = log.last_date + timedelta(days=1)
    if cutoff + timedelta(days=h) > end:
        raise InputError(
            f"{log.source}: cutoff {cutoff} + {h} days ends after the last transaction "
            f"({log.last_date}); use a cutoff on or before {end - timedelta(days=h)}"
        )
    if cutoff <= log.first_date:
        raise InputError(f"{log.source}: cutoff {cutoff} is not after the first transaction "
                         f"({log.first_date})")
    data = training_data(log, cutoff, config, accounts)
    data.deployed_horizon_days = deployed_horizon_days
    actual = future_values(log, cutoff, h, data.current.index)
    predictions = pd.DataFrame(
        {"actual": actual["value"], "actual_orders": actual["orders"],
         "trailing_value": data.current["trailing_value"]}
    )
    rows, skipped, fitted = {}, {}, {}
    for name in names:
        started = time.perf_counter()
        try:
            model = fit_value_model(name, data, config)
        except ValueError as exc:
            skipped[name] = str(exc)
            continue
        predictions[name] = model.predict(data.current)
        fitted[name] = model
        rows[name] = {
            **value_metrics(predictions["actual"], predictions[name]),
            "fit_seconds": time.perf_counter() - started,
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model"
    events, event_metrics = _evaluate_events(data, predictions, fitted, config)
    return BacktestResult(cutoff, h, table, predictions, events, event_metrics, skipped,
                          fitted, data)


def _evaluate_events(
    data: TrainingData, predictions: pd.DataFrame, fitted: dict[str, object], config: Config
) -> tuple[pd.DataFrame, dict[str, float]]:
    """AUC of decline and growth scores against realized events, with 1 - P(alive) as peer."""
    decline, growth = event_labels(predictions["trailing_value"], predictions["actual"], config)
    events = pd.DataFrame({"decline": decline, "growth": growth}, index=predictions.index)
    metrics: dict[str, float] = {}
    # Decline AUCs are measured where decline can happen: accounts with trailing value.
    # A cutoff after a quiet spell may have none: NaN then, as for a single class.
    had_value = predictions["trailing_value"].to_numpy() > 0
    peer = fitted.get("bgnbd")  # lifetimes' 1 - P(alive) is the peer for decline risk
    if peer is not None:
        metrics["decline_auc_1_minus_p_alive"] = auc(
            decline[had_value], 1 - peer.predict_p_alive(data.current)[had_value]) \
            if had_value.any() else float("nan")
    companion = fitted.get("mbgnbd")
    if companion is None:
        try:
            companion = fit_value_model("mbgnbd", data, config)
        except ValueError:
            companion = None
    if companion is not None:  # the P(alive) that score files carry
        events["p_alive"] = companion.predict_p_alive(data.current)
        metrics["p_alive_auc_orders_again"] = auc(predictions["actual_orders"] > 0,
                                                  events["p_alive"])
    classifiers = fit_event_models(data, config)
    if classifiers is not None:
        events["decline_risk"] = classifiers[0].predict_proba(data.current)[:, 1]
        events["growth_potential"] = classifiers[1].predict_proba(data.current)[:, 1]
    elif companion is not None:  # what a score file then carries (KeyLTVModel)
        events["decline_risk"], events["growth_potential"] = fallback_events(
            companion, data.current, predictions["trailing_value"],
            companion.predict(data.current), events["p_alive"], config.events.decline_ratio)
    if "decline_risk" in events:
        metrics["decline_auc"] = auc(decline[had_value], events["decline_risk"][had_value]) \
            if had_value.any() else float("nan")
        metrics["growth_auc"] = auc(growth, events["growth_potential"])
    metrics["event_classifiers"] = 1.0 if classifiers is not None else 0.0  # 0: fallback
    metrics["decline_rate"] = float(np.mean(decline[had_value])) if had_value.any() else float("nan")
    metrics["growth_rate"] = float(np.mean(growth))
    return events, metrics


def choose_champion(table: pd.DataFrame, metric: str) -> str:
    """Best model of a backtest table by ``metric`` (ties: first in table order).

    Raises
    ------
    ValueError
        If no model has a finite value of ``metric``.
    """
    scores = table[metric].astype(float)
    scores = scores[np.isfinite(scores)]
    if scores.empty:
        raise ValueError(f"no model has a finite {metric} in the backtest")
    return str((scores * HIGHER_IS_BETTER[metric]).idxmax())


# History a selection backtest needs before its cutoff: two windows of 28 days.
MIN_HISTORY_DAYS = 56


def validation_horizon(first_date: date, as_of: date, config: Config) -> int:
    """Horizon of the selection backtest inside ``[first_date, as_of)``: half the history it may use.

    ``min(horizon, history) // 2`` is the one choice that fits every model of the
    selection backtest on the same data as its refit at ``as_of``: the supervised
    models' latest training cutoff is then ``as_of - min(horizon, history -
    min_feature_days)`` in both fits (the label window shrinks, the cutoffs and the
    history before them do not). A full horizon would judge them with a horizon less
    history than they are deployed with, and so favour the probabilistic models: in
    ``bench-accuracy`` the champion's lead over the best peer at the eight four-year
    simulator origins (seed 7) went from Gini +0.002..+0.007 to +0.004..+0.008 and from
    Spearman +0.001..+0.016 to +0.008..+0.023 with half the horizon (on seed 11, from
    -0.0003..+0.0077 to +0.0045..+0.0078 and -0.002..+0.021 to +0.009..+0.024).
    The selection then ranks models on value over half the horizon, a proxy that
    orders accounts much as the full horizon does.

    Raises
    ------
    InputError
        If the history is too short (under 2 x 28 days).
    """
    history = (as_of - first_date).days
    if history <= 0:  # e.g. an evaluate origin stepped back before the log starts
        raise InputError(f"{as_of} is not after the first transaction ({first_date}): no "
                         "history to train on")
    if history < MIN_HISTORY_DAYS:
        raise InputError(f"only {history} days of history before {as_of}: too short to train")
    return min(config.horizon_days, history) // 2


def select_champion(
    log: TransactionLog, as_of: date, config: Config, accounts: pd.DataFrame | None = None
) -> tuple[BacktestResult, str]:
    """Backtest every model inside the history before ``as_of`` and pick the best.

    Models that cannot be fitted at the validation cutoff (e.g. LightGBM on a very
    short history) are not eligible: keyltv only deploys what it could evaluate.
    """
    as_of = as_date(as_of)
    try:
        h_v = validation_horizon(log.first_date, as_of, config)
    except InputError as exc:
        raise InputError(f"{log.source}: {exc}") from None
    inner = config if h_v == config.horizon_days else config.with_overrides(horizon_days=h_v)
    result = backtest(log, as_of - timedelta(days=h_v), inner, accounts,
                      deployed_horizon_days=config.horizon_days)
    if config.selection.blend:
        # Idle at the deployed horizon, not the selection's half of it (see blend.stratify).
        add_blend(result, config.seed, idle_days=config.horizon_days)
    if result.table.empty:  # every model listed was skipped: nothing to deploy
        raise InputError(f"{log.source}: no model of the config's models could be fitted at "
                         f"the selection cutoff {result.cutoff}: " + "; ".join(
                             f"{name}: {why}" for name, why in result.skipped.items()))
    # The naive peer is the bar to clear, not a model to deploy: it is only chosen
    # when nothing else could be fitted (it may still carry weight inside the blend).
    candidates = result.table.drop(index="trailing", errors="ignore")
    if candidates.empty:
        candidates = result.table
    return result, choose_champion(candidates, config.selection.metric)


BLEND = "blend"


def add_blend(result: BacktestResult, seed: int, idle_days: int | None = None) -> None:
    """Add the cross-fitted blend of the fitted models to a selection backtest.

    The table row and ``predictions["blend"]`` are out-of-fold (each account's weights
    were fitted without it), so the blend competes on equal terms with single models;
    ``blend_weights`` are then fitted on the whole holdout, for deployment. With
    ``idle_days`` (the deployed horizon), accounts without an order for that long get
    their own weights where both strata are large enough (see
    :func:`keyltv.models.blend.stratify`); None: no value in the trailing window.
    """
    names = [m for m in result.table.index if m in result.predictions]
    if len(names) < 2:
        return
    actual = result.predictions["actual"]
    strata = stratify(result.data.current, idle_days)
    if not can_stratify(strata, actual):
        strata, idle_days = None, None
    frame = blend_columns(result.predictions, names, strata)
    weights = {m: float(w) for m, w in blend_weights(frame, actual).items() if w > 0}
    _record_blend(result, cross_fitted_blend(frame, actual, seed=seed), weights)
    result.blend_idle_days = idle_days
    result.models[BLEND] = BlendedLTV({m: result.models[m] for m in components_of(weights)},
                                      weights, idle_days)


def apply_blend(result: BacktestResult, weights: dict[str, float],
                idle_days: int | None = None) -> None:
    """Blend ``result``'s models with ``weights`` fitted elsewhere; add the row.

    ``idle_days`` is the stratum rule those weights were fitted with
    (``blend_idle_days`` of the backtest that fitted them).

    Raises
    ------
    ValueError
        If a weighted model was not fitted in ``result``.
    """
    names = components_of(weights)
    missing = [m for m in names if m not in result.predictions]
    if missing:
        raise ValueError(f"blend component {missing[0]} could not be fitted at {result.cutoff}: "
                         f"{result.skipped.get(missing[0])}")
    strata = stratify(result.data.current, idle_days) if is_stratified(weights) else None
    _record_blend(result, blend(blend_columns(result.predictions, names, strata), weights),
                  dict(weights))
    result.blend_idle_days = idle_days if strata is not None else None


def _record_blend(result: BacktestResult, predicted: np.ndarray, weights: dict[str, float]) -> None:
    """The blend's predictions, table row and weights in ``result``."""
    result.predictions[BLEND] = predicted
    # Its cost is its parts' (a 0 read as a free model in the runs table).
    parts = [m for m in components_of(weights) if m in result.table.index]
    seconds = float(result.table.loc[parts, "fit_seconds"].sum()) if parts else 0.0
    result.table.loc[BLEND] = pd.Series({**value_metrics(result.predictions["actual"], predicted),
                                         "fit_seconds": seconds})
    result.blend_weights = weights


# The nested origin evaluation, defined here until it moved to keyltv.evaluation.origins.
_MOVED_TO_ORIGINS = ("OriginResult", "evaluate_origin", "rolling_origins", "season_ratios")


def __getattr__(name: str) -> object:
    """The nested origin evaluation, which was defined here: user code imports it so.

    It moved to :mod:`keyltv.evaluation.origins`; importing it from there at the top of
    this module would be circular (it runs the backtests defined here).
    """
    if name in _MOVED_TO_ORIGINS:
        from keyltv.evaluation import origins

        return getattr(origins, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

