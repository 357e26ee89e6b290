"""The champion gate: whether a newly registered model takes ``@champion``.

With :func:`signed`, a metric's gain as the gate and the training summary print it.
"""

from __future__ import annotations

import pandas as pd

from keyltv.config import Config
from keyltv.evaluation.metrics import HIGHER_IS_BETTER
from keyltv.tracking.store import Store


def signed(gain: float) -> str:
    """A metric's gain with its sign, in enough digits to tell it from a tie.

    >>> signed(0.01234), signed(-0.00002), signed(0.0)
    ('+0.0123', '-2.0e-05', '+0.0000')
    """
    if gain != 0 and abs(gain) < 5e-5:
        return f"{gain:+.1e}"
    return f"{gain:+.4f}"


def champion_gate(store: Store, tags: dict[str, str], config: Config,
                  table: pd.DataFrame | None = None, version: str | None = None
                  ) -> tuple[bool, str]:
    """Move ``@champion`` only if the new model beats it on the primary backtest metric.

    Metrics of two backtests compare only on the same holdout: the same training data
    (``train_data_hash``: the log before ``as_of`` and the account table) cut at the same
    ``as_of``, judged by the same metric. Otherwise the champion's kind
    of model (its ``value_model`` tag: ``hybrid``, ``blend``...) was refitted in this
    backtest, and the new model must beat that row of ``table``; a champion of the
    same kind is replaced by its refit on newer or corrected data (the same model,
    fresher). A champion trained
    for another horizon predicts something else: it is replaced, unless an earlier
    version of the new model's horizon, judged on the same backtest, did better than
    the new model (``version`` is the new model's own, left out of that search). In
    every case the
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
    sign = HIGHER_IS_BETTER[metric]
    new_value = float(tags["metric_value"])
    if old.get("horizon_days") != tags["horizon_days"]:
        return _across_horizons(store, current, tags, config, version)
    same_holdout = _same_holdout(old, tags)
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
    if gain <= 0 and config.selection.min_improvement == 0:  # no bar was set: just no gain
        return False, (f"{metric} {new_value:.4f} does not beat {against} ({signed(gain)}); "
                       f"@champion stays on version {current.version}")
    return False, (f"{metric} {new_value:.4f} does not beat {against} by at least "
                   f"selection.min_improvement={config.selection.min_improvement} "
                   f"({signed(gain)}); @champion stays on version {current.version}")


def _same_holdout(old: dict[str, str], tags: dict[str, str]) -> bool:
    """Whether two versions' backtests judged the same rows: same training data and as_of.

    The training data's hash where both versions carry it; a version registered before
    it existed has only the whole file's.
    """
    key = "train_data_hash" if "train_data_hash" in old and "train_data_hash" in tags \
        else "data_hash"
    return old.get(key) == tags.get(key) and old.get("trained_as_of") == tags["trained_as_of"]


def _across_horizons(store: Store, current: object, tags: dict[str, str], config: Config,
                     version: str | None) -> tuple[bool, str]:
    """The gate when the champion predicts another horizon than the new model.

    Horizons do not compare, so the champion is replaced, unless a version of the new
    model's horizon did better on the same backtest. Without that search a training
    with another horizon took the alias, and a naive model trained next with the
    former horizon took it from that one, although an earlier version of that horizon
    had beaten it on the same data (audit 28).
    """
    metric, sign = tags["metric"], HIGHER_IS_BETTER[tags["metric"]]
    new_value = float(tags["metric_value"])
    rivals = [v for v in store.model_versions()
              if str(v.version) != str(version)
              and v.tags.get("horizon_days") == tags["horizon_days"]
              and v.tags.get("metric") == metric and "metric_value" in v.tags
              and _same_holdout(v.tags, tags)]
    replaced = (f"version {current.version} predicts another horizon "
                f"({current.tags.get('horizon_days')} days)")
    if rivals:
        best = max(rivals, key=lambda v: sign * float(v.tags["metric_value"]))
        best_value = float(best.tags["metric_value"])
        gain = sign * (new_value - best_value)
        if not (gain > 0 and gain >= config.selection.min_improvement):
            return False, (f"{replaced}, but version {best.version}, of this horizon, "
                           f"scored {metric} {best_value:.4f} on the same backtest, and "
                           f"{new_value:.4f} does not beat it ({signed(gain)}); @champion "
                           f"stays on version {current.version}")
    return True, f"{replaced}; replaced"
