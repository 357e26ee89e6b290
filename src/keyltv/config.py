"""Run configuration: YAML -> validated, frozen objects.

What to run (columns, horizon, models, tier and flag rules) lives in the ``configs/``
YAML files; where to track (the MLflow URI) may come from the environment instead.
Nothing here touches the file system or MLflow at import time.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from keyltv.data.schema import InputError, reads_time_zone


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Columns(_Frozen):
    """Names of the transaction-log columns in the user's file.

    A line's value comes from ``amount``, or, for wholesale and ERP exports that carry
    no line total, from ``quantity`` x ``unit_price`` (set both and leave ``amount``
    unset or null). Its margin comes from ``margin``, or from ``unit_cost`` as
    ``quantity x (unit_price - unit_cost)``.
    """

    customer_id: str = "customer_id"
    date: str = "date"
    amount: str | None = "amount"
    margin: str | None = "margin"
    quantity: str | None = None
    unit_price: str | None = None
    unit_cost: str | None = None

    @model_validator(mode="after")
    def _one_source_per_value(self) -> Columns:
        priced = (self.quantity, self.unit_price)
        if (priced[0] is None) != (priced[1] is None):
            raise ValueError("set both quantity and unit_price (a line's amount is their "
                             "product), or neither")
        if priced[0] is None:
            if self.amount is None:
                raise ValueError("no amount: map the amount column, or set quantity and "
                                 "unit_price")
            if self.unit_cost is not None:
                raise ValueError("unit_cost needs quantity and unit_price (margin = quantity "
                                 "x (unit_price - unit_cost))")
        elif "amount" in self.model_fields_set and self.amount is not None:
            raise ValueError("amount and quantity x unit_price are both mapped; set amount "
                             "to null to use the product, or drop quantity and unit_price")
        if (self.unit_cost is not None and "margin" in self.model_fields_set
                and self.margin is not None):
            raise ValueError("margin and unit_cost are both mapped; set margin to null to "
                             "use quantity x (unit_price - unit_cost), or drop unit_cost")
        return self

    def roles(self) -> dict[str, str | None]:
        """Contract role -> column name, as :func:`keyltv.data.transactions.load_transactions` takes it.

        The roles that another mapping replaces (``amount`` beside ``quantity`` and
        ``unit_price``, ``margin`` beside ``unit_cost``) are None.
        """
        roles = self.model_dump()
        if self.quantity is not None:
            roles["amount"] = None
        if self.unit_cost is not None:
            roles["margin"] = None
        return roles

    def value_label(self) -> str:
        """Where a line's value comes from, for messages: ``column 'amount'`` or the product."""
        if self.quantity is None:
            return f"column '{self.amount}'"
        return f"columns '{self.quantity}' x '{self.unit_price}'"


class Training(_Frozen):
    """How ``train`` cuts its own history into training examples.

    Attributes
    ----------
    n_cutoffs : int
        Number of stacked training cutoffs for the gradient-boosted models; each adds one
        row per account seen before it, so short histories still give enough examples.
    cutoff_step_days : int
        Days between consecutive stacked cutoffs.
    min_feature_days : int
        A cutoff needs at least this many days of history before it to be used.
    max_training_rows : int
        Cap on stacked (account, cutoff) rows for the gradient-boosted models: above it
        a seeded uniform sample of rows is kept, and the number left out is logged, so
        training cost stays bounded however large the book (LightGBM's time grows with
        rows x trees; 300,000 rows train in about a minute on two cores).
    """

    n_cutoffs: int = Field(4, ge=1, le=24)
    cutoff_step_days: int = Field(91, ge=1)
    min_feature_days: int = Field(90, ge=1)
    max_training_rows: int = Field(300_000, ge=1000)


class Backtest(_Frozen):
    """Rolling-origin evaluation (``keyltv evaluate``, benchmarks)."""

    n_origins: int = Field(2, ge=1, le=12)
    step_days: int = Field(91, ge=1)


class Selection(_Frozen):
    """How the champion is chosen and when the ``champion`` alias may move."""

    metric: Literal["normalized_gini", "spearman", "mae", "decile_mape"] = "normalized_gini"
    # A gain, in the metric's own units: a negative one would promote a worse model.
    min_improvement: float = Field(0.0, ge=0)
    # Also offer a non-negative blend of the fitted models (weights fitted on the
    # selection holdout, judged there by 5-fold cross-fitting over accounts).
    blend: bool = True


class Events(_Frozen):
    """Definitions of the account events that ``decline_risk`` and ``growth_potential`` score.

    Decline: value over the horizon below ``decline_ratio`` x trailing value (churn counts).
    Growth: value over the horizon above ``growth_ratio`` x trailing value.
    """

    decline_ratio: float = Field(0.5, gt=0, lt=1)
    growth_ratio: float = Field(1.5, gt=1)


class Tiers(_Frozen):
    """ABC(D) tiers: share of accounts per tier, or cumulative share of value."""

    method: Literal["share_of_accounts", "cumulative_value"] = "share_of_accounts"
    # Share of accounts in A, B, C (D is the rest): the 20/30/30/20 pyramid.
    shares: tuple[float, float, float] = (0.2, 0.3, 0.3)
    # Cumulative predicted-value cut points for A, B, C when method is cumulative_value.
    value_cuts: tuple[float, float, float] = (0.8, 0.95, 0.99)
    # With --previous: an account stays in its earlier, neighbouring tier while its value
    # lies within this share of the cut between the two and moved little (0 = no band;
    # see keyltv.scoring.rules.hold_near_cuts). Near-tied accounts otherwise swap tiers
    # every month: on CDNOW 1,541 accounts that bought nothing in a month changed tier,
    # 343 with 0.05.
    hysteresis: float = Field(0.05, ge=0, lt=1)

    @model_validator(mode="after")
    def _check(self) -> Tiers:
        if sum(self.shares) >= 1 or min(self.shares) <= 0:
            raise ValueError(f"tiers.shares must be positive and sum below 1, got {self.shares}")
        if (list(self.value_cuts) != sorted(self.value_cuts) or not 0 < self.value_cuts[0]
                or self.value_cuts[-1] > 1):
            raise ValueError(f"tiers.value_cuts must increase within (0, 1], got {self.value_cuts}")
        return self


class Flags(_Frozen):
    """Thresholds of the documented flag rules (see ``keyltv.scoring.rules``)."""

    at_risk_decline: float = Field(0.5, ge=0, le=1)
    high_potential_growth: float = Field(0.5, ge=0, le=1)
    # With a precision target, `score` replaces the threshold above by the lowest one at
    # which the flagged valuable accounts' mean score reaches the target with 95%
    # confidence (the most warnings a team can trust), else by the lowest one whose
    # precision among valuable accounts reached it in `train`'s selection backtest; the
    # fixed threshold stays when neither does (keyltv.scoring.rules.resolve_thresholds).
    # null: always the fixed threshold.
    at_risk_precision: float | None = Field(0.6, gt=0, le=1)
    high_potential_precision: float | None = Field(0.5, gt=0, le=1)
    # "Valuable" = in the top share of accounts by trailing or predicted value.
    valuable_share: float = Field(0.2, gt=0, le=1)
    low_margin_rate: float = Field(0.05, ge=0, le=1)
    sleeping_p_alive: float = Field(0.3, ge=0, le=1)


class Engine(_Frozen):
    """The embedded SQL engine (DuckDB) that validates the log and computes features.

    Attributes
    ----------
    memory_limit : str or None
        Most memory DuckDB may hold, as a size such as ``"300MB"`` or ``"2GB"``; above
        it DuckDB spills to a private folder in the system's temporary directory, which
        it removes when the job ends. ``None``: DuckDB's default, 80% of the RAM. The
        limit bounds data preparation only: the models and their frames come on top.
        ``make bench-speed`` measures what a limit costs in time.
    """

    memory_limit: str | None = None

    @field_validator("memory_limit")
    @classmethod
    def _size(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(_SIZE, value.strip()):
            raise ValueError("expected a size such as 300MB or 2GB (units KB, MB, GB, TB, "
                             "KiB, MiB, GiB, TiB)")
        return value if value is None else value.strip()


_SIZE = re.compile(r"[0-9]+(\.[0-9]+)? ?(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE)


class Tracking(_Frozen):
    """Where MLflow data lives. ``MLFLOW_TRACKING_URI`` overrides ``uri``."""

    uri: str | None = None
    experiment: str = "keyltv"
    model_name: str = "keyltv"


# The longest horizon a config or --horizon-days may ask for (ten years).
MAX_HORIZON_DAYS = 3660

# Names of the value models (built in keyltv.models.bundle). Kept here, not imported
# from keyltv.models, so that reading a config does not import LightGBM and lifetimes.
MODEL_NAMES = ("trailing", "bgnbd", "mbgnbd", "pareto", "lightgbm", "hybrid")


class Config(_Frozen):
    """A complete, validated keyltv configuration."""

    columns: Columns = Columns()
    # strptime format of the log's text dates (None: ISO 8601); the account table's
    # dates are read in it too, besides ISO.
    date_format: str | None = None
    # How the log writes numbers: "," and "." read -1.234,5 (see NumberFormat).
    decimal_separator: Literal[".", ","] = "."
    thousands_separator: Literal[".", ",", " ", "'"] | None = None
    # Text encoding of CSV files; latin-1 reads older Western-European exports.
    encoding: Literal["utf-8", "latin-1"] = "utf-8"
    # Lines without a customer id (guest or cash sales): refused unless this is true;
    # then they are left out and counted (note blank_id_lines_dropped).
    drop_blank_ids: bool = False
    # Account-table columns read as text (categories) even when every value is a number:
    # codes such as a region or industry number, whose order means nothing. A column
    # named here is also never read as dates nor left out as an id.
    account_text_columns: tuple[str, ...] = ()
    horizon_days: int = Field(365, ge=1, le=MAX_HORIZON_DAYS)
    # numpy's and scikit-learn's generators take seeds in [0, 2**32).
    seed: int = Field(42, ge=0, le=2**32 - 1)
    # At least one: the backtest ranks these, and the champion is one of them.
    models: tuple[str, ...] = Field(("trailing", "bgnbd", "mbgnbd", "lightgbm", "hybrid"),
                                    min_length=1)
    training: Training = Training()
    events: Events = Events()
    backtest: Backtest = Backtest()
    selection: Selection = Selection()
    tiers: Tiers = Tiers()
    flags: Flags = Flags()
    engine: Engine = Engine()
    tracking: Tracking = Tracking()

    @field_validator("date_format")
    @classmethod
    def _local_dates(cls, value: str | None) -> str | None:
        # keyltv nets lines by local day; a format that reads an offset would need a
        # time zone to convert to (the loader checks the rest of the format).
        if value is not None and reads_time_zone(value):
            raise ValueError("reads a time zone (%z or %Z); keyltv needs local dates "
                             "without an offset: convert them before export and drop %z/%Z")
        return value

    @model_validator(mode="after")
    def _separators_differ(self) -> Config:
        if self.thousands_separator == self.decimal_separator:
            raise ValueError(f"decimal_separator and thousands_separator are both "
                             f"{self.decimal_separator!r}")
        return self

    @field_validator("models")
    @classmethod
    def _known_models(cls, models: tuple[str, ...]) -> tuple[str, ...]:
        # A field validator, so that the message names `models` (a model validator's
        # named "(top level)" and quoted the whole config; audit 29).
        unknown = [m for m in models if m not in MODEL_NAMES]
        if unknown:
            raise ValueError(f"unknown model {unknown[0]!r}; allowed: {', '.join(MODEL_NAMES)}")
        repeated = sorted({m for m in models if models.count(m) > 1})
        if repeated:  # the backtest table is keyed by model: a second row would overwrite it
            raise ValueError(f"model {repeated[0]!r} is listed more than once")
        return models

    def with_overrides(self, **changes: object) -> Config:
        """Return a copy with top-level fields replaced (``None`` values are ignored)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        return self.model_validate({**self.model_dump(), **changes})


def load_config(path: str | Path | None = None) -> Config:
    """Read and validate a YAML configuration; ``None`` gives the defaults.

    Raises
    ------
    InputError
        If the file is missing, is not YAML, or a field is invalid; the message names
        the file, the field and the value.
    """
    if path is None:
        return Config()
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a valid YAML file ({exc.__class__.__name__})") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        value = err.get("input")
        # Our own validators' messages come prefixed with pydantic's "Value error, ".
        message = err["msg"].removeprefix("Value error, ")
        raise InputError(f"{path}: field {field!r} = {value!r}: {message}") from None
