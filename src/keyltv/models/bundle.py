"""The deployable predictor: a champion value model plus the models around it.

:class:`KeyLTVModel` is what gets registered. It turns a per-account feature frame into
every model output of a score file (value with interval, orders, P(alive), decline and
growth scores, profit). :mod:`keyltv.models.training` fits its parts from a validated
log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd

from keyltv.models.events import GBMClassifier
from keyltv.models.interval import BandedIntervals
from keyltv.models.probabilistic import EVENT_KINDS, ProbabilisticLTV


def fallback_events(probabilistic: object, features: pd.DataFrame, trailing: object,
                    predicted_value: object, p_alive: object, decline_ratio: float | None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Decline and growth scores without classifiers, as the bundle and the backtest give them.

    :func:`fallback_event_scores`, with decline risk replaced by the count model's chance
    of the decline event where ``probabilistic`` is a BG/NBD or MBG/NBD model and
    ``decline_ratio`` is known (None: a bundle saved before stop 24).
    """
    decline, growth = fallback_event_scores(trailing, predicted_value, p_alive)
    if (decline_ratio is not None and isinstance(probabilistic, ProbabilisticLTV)
            and probabilistic.kind in EVENT_KINDS):
        decline = probabilistic.event_probabilities(
            features, trailing, decline_ratio=decline_ratio)["decline"]
    return decline, growth


def fallback_event_scores(trailing: object, predicted_value: object, p_alive: object
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Decline and growth scores without classifiers or a count model's chances.

    Decline risk is the probability that the account is gone, 1 - P(alive); growth
    potential maps the predicted-to-trailing ratio through a logistic curve centred on
    the growth event's 1.5x. Since stop 24 a count model's own chance of decline
    (:meth:`ProbabilisticLTV.event_probabilities`) replaces 1 - P(alive) (see
    :func:`fallback_events`); the curve stays for growth.

    Why not the count model's chance of growth too: on the simulator's ``short_history``
    logs (9 months before the origin; seeds 7, 11, 23, ad hoc) it ranked growth as well
    (AUC 0.73) and decline better (0.63-0.65 against 0.57-0.60), but a stationary count
    model cannot see a trend, and it gave the likeliest growers too low a chance: the
    flag threshold set for precision 0.5 (:func:`keyltv.scoring.rules.resolve_thresholds`)
    rose to 0.46-0.50 and flagged them at precision 0.74-0.89, recall 0.18-0.24, where
    the curve's threshold met the goal at all three (0.66-0.69 / 0.39-0.46).
    """
    trailing = np.clip(np.asarray(trailing, dtype=float), 0.0, None)
    ratio = np.log1p(np.clip(np.asarray(predicted_value, dtype=float), 0.0, None)) - np.log1p(trailing)
    decline = 1.0 - np.asarray(p_alive, dtype=float)
    growth = 1.0 / (1.0 + np.exp(-3.0 * (ratio - np.log(1.5))))
    return np.where(trailing > 0, decline, 0.0), growth


@dataclass
class KeyLTVModel:
    """The registered predictor: features in, every model output out.

    Attributes
    ----------
    champion : str
        Name of the value model (``trailing``, ``bgnbd``, ``lightgbm``...).
    value_model : estimator
        Fitted value model.
    probabilistic : ProbabilisticLTV or None
        Source of expected orders and P(alive).
    events : tuple of GBMClassifier or None
        Decline and growth classifiers.
    intervals : BandedIntervals or None
        Interval calibrated on the backtest holdout.
    horizon_days : int
    trained_as_of : datetime.date
    feature_columns : list of str
        Columns the models read (features and ``attr_*``), checked at scoring time.
    margin_rate : float or None
        Book-wide margin rate, the prior that thin histories shrink towards.
    margin_credibility : float or None
        Value (money) at which an account's own margin rate counts as much as the
        book's (see :func:`margin_credibility`); ``inf`` pools every account to the
        book's rate. None in a bundle saved before it existed, which uses the median
        ``value_total`` of ``book_medians`` instead.
    book_medians : dict
        The training book's median ``value_total``, ``mean_gap_days`` (the gap of
        the fallback without a count model) and ``avg_order_value`` (the scale of its
        money). Learned at fit time, so that an account's
        outputs do not depend on which other accounts are scored with it; a bundle
        saved before they existed uses the scored batch's medians.
    flag_thresholds : dict
        Flag thresholds learned in the backtest to meet the precision targets
        (``Flags`` field -> value); they replace the config's fixed thresholds.
    flag_targets : dict
        The precision target each of ``flag_thresholds`` was learned for (``Flags``
        threshold field -> the config's ``flags.*_precision`` in training). Scoring
        uses a learned threshold only for the same target (see
        :func:`keyltv.scoring.score.scoring_flags`). Empty in a bundle saved before it
        existed, whose thresholds are used for any target.
    ignored_attributes : dict
        Account-table columns training left out as ids (column -> why, see
        :func:`keyltv.features.attributes.id_like_attributes`), which scoring leaves out
        too rather than judging its own table again. Empty in a bundle saved before it
        existed.
    decline_ratio : float, optional
        The decline event's ``Config.events.decline_ratio``. Without classifiers, the
        count model's chance of that event is the decline risk (:func:`fallback_events`).
        None in a bundle saved before stop 24, which keeps 1 - P(alive).
    training_run_id : str or None
        The MLflow run that trained and logged it, written into every score file
        (``model_run_id``): a registry's name and number (``keyltv/1``) repeat across
        project folders. None in a bundle saved before it existed or never logged.
    account_text_columns : tuple of str
        The config's ``account_text_columns`` in training: columns read as categories
        although their values are numbers. Scoring must read them so (see
        :func:`keyltv.workflows.score_job.score_bundle`). Empty in a bundle saved
        before it existed.
    """

    champion: str
    value_model: object
    probabilistic: ProbabilisticLTV | None
    events: tuple[GBMClassifier, GBMClassifier] | None
    intervals: BandedIntervals | None
    horizon_days: int
    trained_as_of: date
    feature_columns: list[str]
    margin_rate: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    book_medians: dict[str, float] = field(default_factory=dict)
    flag_thresholds: dict[str, float] = field(default_factory=dict)
    flag_targets: dict[str, float] = field(default_factory=dict)
    margin_credibility: float | None = None
    ignored_attributes: dict[str, str] = field(default_factory=dict)
    decline_ratio: float | None = None
    account_text_columns: tuple[str, ...] = ()
    training_run_id: str | None = None

    def predict(self, features: pd.DataFrame) -> pd.DataFrame:
        """Model outputs per account (index kept).

        Returns
        -------
        pandas.DataFrame
            ``predicted_value``, ``predicted_value_low``, ``predicted_value_high``,
            ``predicted_orders``, ``p_alive``, ``decline_risk``, ``growth_potential``
            and, when the model knows margins, ``predicted_profit``.
        """
        value = np.asarray(self.value_model.predict(features), dtype=float)
        out = pd.DataFrame(index=features.index)
        out["predicted_value"] = value
        if self.intervals is not None:
            out["predicted_value_low"], out["predicted_value_high"] = self.intervals.predict(value)
        else:
            out["predicted_value_low"], out["predicted_value_high"] = value, value
        out["predicted_orders"], out["p_alive"] = self._orders_and_alive(features)
        out["decline_risk"], out["growth_potential"] = self._event_scores(features, out)
        # Profit needs margins in the model and in the scored log: without the latter,
        # every account would get the training book's margin rate, an invented profit.
        if self.margin_rate is not None and features["margin_rate"].notna().any():
            out["predicted_profit"] = value * self._shrunk_margin_rate(features)
        return _nothing_without_orders(features, out)

    def _orders_and_alive(self, features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        if self.probabilistic is not None:
            return (self.probabilistic.predict_orders(features),
                    self.probabilistic.predict_p_alive(features))
        # Fallback without a count model: the account's own order rate, and survival
        # decaying with recency measured in its own (or the typical) gaps.
        rate = features["orders_total"] / features["tenure_days"].clip(lower=1.0)
        gap = features["mean_gap_days"].fillna(self._book_median(features, "mean_gap_days"))
        gap = gap.fillna(float(self.horizon_days))
        alive = np.exp(-features["days_since_last_order"] / gap.clip(lower=1.0))
        return (rate * self.horizon_days).to_numpy(), alive.clip(0, 1).to_numpy()

    def _event_scores(self, features: pd.DataFrame, out: pd.DataFrame):
        trailing = features["trailing_value"].clip(lower=0.0).to_numpy()
        if self.events is None:
            # The backtest judged the fallback with the probabilistic model's value.
            value = (self.probabilistic.predict(features) if self.probabilistic is not None
                     else out["predicted_value"])
            return fallback_events(self.probabilistic, features, trailing, value,
                                   out["p_alive"], getattr(self, "decline_ratio", None))
        decline = self.events[0].predict_proba(features)[:, 1]
        growth = self.events[1].predict_proba(features)[:, 1]
        # No trailing value, nothing to lose: the decline event cannot happen.
        return np.where(trailing > 0, decline, 0.0), growth

    def _shrunk_margin_rate(self, features: pd.DataFrame) -> np.ndarray:
        """Own margin rate, shrunk towards the book's rate by its credibility.

        The weight of the own rate is ``value / (value + k)``, with ``k`` the learned
        :attr:`margin_credibility`.
        """
        # Within [-1, 1], as the credibility was estimated: a margin above the amount (an
        # order of 200 with a margin of 600) predicted a profit of twice the value.
        own = np.clip(features["margin_rate"].to_numpy(dtype=float), -1.0, 1.0)
        weight = features["value_total"].clip(lower=0.0).to_numpy(dtype=float)
        # getattr: a bundle pickled before the field existed has no such attribute; it
        # keeps the rule it was saved with (k = the book's median value).
        k = getattr(self, "margin_credibility", None)
        if k is None:
            k = max(self._book_median(features, "value_total"), 1.0)
        w = np.zeros_like(weight) if np.isinf(k) else weight / (weight + max(k, 1e-9))
        return np.where(np.isnan(own), self.margin_rate, w * np.nan_to_num(own) + (1 - w) * self.margin_rate)

    def _book_median(self, features: pd.DataFrame, column: str) -> float:
        """The training book's median of ``column`` (see ``book_medians``)."""
        # getattr: a bundle pickled before the field existed has no such attribute.
        known = getattr(self, "book_medians", {})
        return float(known[column]) if column in known else _median(features, column)

    def explain(self, features: pd.DataFrame, target: str = "value") -> pd.DataFrame | None:
        """Per-row feature contributions behind one output, or None if it has none.

        Parameters
        ----------
        target : {"value", "decline", "growth"}
            Which model to explain: the value model, or the decline/growth classifier.
        """
        if target == "value":
            model = self.value_model
        elif self.events is not None:
            model = self.events[0 if target == "decline" else 1]
        else:
            return None
        contributions = getattr(model, "contributions", None)
        return contributions(features) if contributions else None


def _nothing_without_orders(features: pd.DataFrame, out: pd.DataFrame) -> pd.DataFrame:
    """Zero every output of the accounts with no order before the cut.

    Such an account has only returns, credit notes or zero-value lines in the log, and
    nothing the models describe: the count models read its first line as a first
    purchase (an audit's account with one credit note of -500 got 6.7 expected orders,
    P(alive) 0.99, tier B and a high-potential flag, like a new buyer of +500). It is
    scored again, as any other, once it orders; ``score`` counts these accounts.
    """
    if "orders_total" not in features:
        return out
    none = ~ordered(features).to_numpy()
    if none.any():
        out.loc[none, :] = 0.0
    return out


def ordered(features: pd.DataFrame) -> pd.Series:
    """Whether each account has an order (a day with a positive net) before the cut."""
    return features["orders_total"].fillna(0) > 0


def book_medians(features: pd.DataFrame) -> dict[str, float]:
    """Medians of the book that scoring needs (see :class:`KeyLTVModel`), NaN-free.

    ``avg_order_value`` (over the accounts with an order) is kept to tell a log in
    other money units from the training book's (see
    :func:`keyltv.workflows.score_job.money_scale_warning`).
    """
    medians = {c: _median(features, c) for c in ("value_total", "mean_gap_days")}
    medians["avg_order_value"] = _median(features[ordered(features)], "avg_order_value")
    return {k: v for k, v in medians.items() if not np.isnan(v)}


def _median(features: pd.DataFrame, column: str) -> float:
    """Median of the known values of ``column`` (value clipped at 0); NaN if none."""
    values = features[column].clip(lower=0.0) if column == "value_total" else features[column]
    return float(values.median())


def margin_credibility(moments: pd.DataFrame) -> float | None:
    """Bühlmann-Straub credibility constant of account margin rates, in money.

    An account's observed margin rate mixes its true rate with the noise of its product
    mix from day to day. With ``k`` = (expected variance within accounts per unit of
    value) / (variance of the true rates between accounts), the best linear estimate
    of its true rate gives its own rate the weight ``value / (value + k)`` and the
    book's the rest (Bühlmann and Straub, 1970). Both variances are estimated from the
    training log, so a book with steady margins trusts a mid-sized account's own rate
    and a noisy one pools more. (A fixed prior of the median account value, used before,
    kept only 63% of a large young account's own 2% rate on a simulated book with
    steady rates, and missed 37 of 118 thin-margin valuable accounts.) Written here
    because the estimator is a few sums and no maintained library in the stack has it.

    Parameters
    ----------
    moments : pandas.DataFrame
        :func:`keyltv.features.accounts.margin_day_moments` of the training cut.

    Returns
    -------
    float or None
        ``k``; ``inf`` when the rates differ no more between accounts than noise
        explains (every account gets the book's rate); ``0.0`` when no account's rate
        varies from day to day (every account keeps its own); None when the variances
        cannot be estimated (fewer than two accounts with a margin, or no account with
        two order days).
    """
    m = moments[moments["weight"] > 0]
    repeat = m["days"] > 1
    dof = float((m["days"] - 1).clip(lower=0).sum())
    if len(m) < 2 or dof <= 0:
        return None
    w = m["weight"].to_numpy(dtype=float)
    rate = m["margin"].to_numpy(dtype=float) / w
    # Within-account spread: sum of value x (day rate - account rate)^2 per account.
    within = np.clip(m["margin_sq"].to_numpy(dtype=float) - w * rate**2, 0.0, None)
    epv = float(within[repeat.to_numpy()].sum()) / dof
    total = w.sum()
    book = float((w * rate).sum() / total)
    spread = float((w * (rate - book) ** 2).sum())
    vhm = (spread - (len(m) - 1) * epv) / (total - float((w**2).sum()) / total)
    if vhm <= 0:
        return float("inf")
    return epv / vhm


def book_margin_rate(features: pd.DataFrame) -> float | None:
    """Value-weighted margin rate of the book, None when no margins were given."""
    if features["margin_rate"].isna().all():
        return None
    value = features["value_total"].clip(lower=0.0)
    known = features["margin_rate"].notna()
    return float((features.loc[known, "margin_rate"] * value[known]).sum() / max(value[known].sum(), 1e-9))
