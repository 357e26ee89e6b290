"""Refuse, with the reason, a log that no model can be trained or judged on.

``train`` and ``evaluate`` both fit every model before a cutoff and rank them on the
days after it; a log too small or too empty for that crashed somewhere inside the
models (an internal error, exit 1) or, worse, gave a table that ranked nothing (a
normalized Gini of 1.0 for every model over one buyer). The same conditions are
checked here for both, before any model is fitted or any tracking store created, so
that such a log is a one-line input error (exit 2).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

from keyltv.config import Config
from keyltv.data.schema import InputError
from keyltv.data.transactions import TransactionLog
from keyltv.evaluation.backtest import validation_horizon
from keyltv.inputs import Inputs, require_orders

# Fewer accounts cannot be ranked, banded into intervals or split into events.
MIN_TRAIN_ACCOUNTS = 10
# Fewer buyers in a holdout cannot rank the models (a Gini over one buyer).
MIN_HOLDOUT_BUYERS = 5


def check_trainable(inputs: Inputs, config: Config) -> None:
    """Refuse a log that ``train`` cannot learn from at ``inputs.as_of``.

    Raises
    ------
    InputError
        ``as_of`` after the day following the last transaction, or any reason of
        :func:`check_learnable`.
    """
    source, as_of = inputs.log.source, inputs.as_of
    end = inputs.log.last_date + timedelta(days=1)
    if as_of > end:
        # Models are judged on the days just before as_of: days the log does not reach
        # would count as days without orders, and every account would look lost.
        raise InputError(f"{source}: --as-of {as_of} is after the log's last transaction "
                         f"({inputs.log.last_date}); train judges models on the days before "
                         f"--as-of, so use --as-of {end} or earlier")
    check_learnable(inputs, config, "train")


def check_evaluable(inputs: Inputs, config: Config, cutoff: date, origins: list[date]) -> None:
    """Refuse a log that ``evaluate`` cannot judge models on at every one of ``origins``.

    At each origin the nested selection must be able to learn (:func:`check_learnable`,
    as ``train`` at that day), and the horizon after it must hold value bought by at
    least :data:`MIN_HOLDOUT_BUYERS` of the accounts seen before it.

    Raises
    ------
    InputError
        Naming ``--cutoff`` when the last horizon ends after the log, else the origin
        and the reason.
    """
    log, h = inputs.log, config.horizon_days
    end = log.last_date + timedelta(days=1)
    if cutoff + timedelta(days=h) > end:
        # Said of --cutoff, not of the earliest origin that the loop would reach first.
        raise InputError(f"{log.source}: --cutoff {cutoff} + {h} days ends after the last "
                         f"transaction ({log.last_date}); use --cutoff "
                         f"{end - timedelta(days=h)} or earlier")
    for origin in origins:
        check_learnable(replace(inputs, as_of=origin), config, "evaluate")
        _check_holdout(log, origin, origin + timedelta(days=h), "evaluate")


# The option that sets the cut, per job, for the advice in messages.
_CUT_OPTION = {"train": "--as-of", "evaluate": "--cutoff"}


def check_learnable(inputs: Inputs, config: Config, job: str) -> None:
    """Refuse a cut at ``inputs.as_of`` that no model can learn from or be ranked on.

    ``job`` (``train`` or ``evaluate``) is named in the messages.

    Raises
    ------
    InputError
        Fewer than :data:`MIN_TRAIN_ACCOUNTS` accounts before the cut, no order at all
        (see :func:`~keyltv.inputs.require_orders`), no account with a repeat order, or
        no value (or fewer than :data:`MIN_HOLDOUT_BUYERS` buyers) in the selection
        holdout before the cut.
    """
    source, as_of = inputs.log.source, inputs.as_of
    accounts, repeaters = inputs.log.con.execute(
        "SELECT count(*), count(*) FILTER (WHERE orders > 1) FROM (SELECT customer_id, "
        "count(*) FILTER (WHERE amount > 0) AS orders FROM daily WHERE day < ? GROUP BY ALL)",
        [as_of]).fetchall()[0]
    if accounts < MIN_TRAIN_ACCOUNTS:
        raise InputError(f"{source}: {accounts} account(s) before {as_of}; {job} needs at "
                         f"least {MIN_TRAIN_ACCOUNTS}; score them with an existing model instead")
    require_orders(inputs, config)
    if repeaters == 0:
        raise InputError(f"{source}: no account ordered on more than one day before {as_of}; "
                         "with no repeat purchase there is no future value to learn from")
    try:
        cutoff = as_of - timedelta(days=validation_horizon(inputs.log.first_date, as_of, config))
    except InputError as exc:
        raise InputError(f"{source}: {exc}") from None
    _check_holdout(inputs.log, cutoff, as_of, job)


def _check_holdout(log: TransactionLog, start: date, end: date, job: str) -> None:
    """Refuse a holdout ``[start, end)`` in which too few earlier accounts bought."""
    held_out, buyers = log.con.execute(
        "SELECT COALESCE(sum(value), 0), count(*) FILTER (WHERE value > 0) FROM ("
        "SELECT customer_id, sum(amount) AS value FROM daily WHERE day >= ? AND day < ? AND "
        "customer_id IN (SELECT customer_id FROM daily WHERE day < ?) GROUP BY ALL)",
        [start, end, start]).fetchall()[0]
    if held_out <= 0:
        raise InputError(f"{log.source}: accounts seen before {start} bought nothing from "
                         f"{start} to {end}; the backtest has no value to judge models on")
    if buyers < MIN_HOLDOUT_BUYERS:
        # A --as-of set years after the log (a mistyped last date) left one buyer in the
        # holdout: every model got a negative Gini and the winner took @champion (audit 22).
        raise InputError(f"{log.source}: only {buyers} account(s) seen before {start} bought "
                         f"from {start} to {end}; the backtest needs {MIN_HOLDOUT_BUYERS} "
                         f"to rank models; check {_CUT_OPTION[job]} against the log's dates")
