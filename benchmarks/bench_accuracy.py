"""Accuracy benchmark: keyltv's champion against its peers, on real and simulated logs.

For every dataset and origin, :func:`keyltv.evaluation.origins.evaluate_origin` fits
every model on data before the origin, and the ``keyltv`` row is the champion that
``keyltv train`` would have chosen with only that data (nested selection), judged on
the next horizon. Peers run in the same call: naive trailing value, BG/NBD +
Gamma-Gamma, Pareto/NBD + Gamma-Gamma. Simulated logs add two rows that are not
peers: the oracle (the accounts' latent parameters) and the Bayes reference (the
simulator's own model with each account's parameters estimated from its orders,
:mod:`keyltv.data.simulate_reference`): what a model of that log could reach.

    python benchmarks/bench_accuracy.py [--accounts 4000] [--only cdnow,base] [--out docs/accuracy.md]
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date

import numpy as np
import pandas as pd

from keyltv.config import Config
from keyltv.data.accounts import load_accounts
from keyltv.data.cdnow import CALIBRATION_END, HOLDOUT_DAYS, load_cdnow
from keyltv.data.simulate import expected_value, simulate_b2b
from keyltv.data.simulate_reference import posterior_reference
from keyltv.data.transactions import load_transactions
from keyltv.evaluation.metrics import auc, best_recall_at_precision, value_metrics
from keyltv.evaluation.origins import evaluate_origin, rolling_origins
from keyltv.models.training import event_labels
from keyltv.scoring.rules import valuable_mask

PEERS = ("trailing", "bgnbd", "pareto")  # the oracle and reference rows are not peers
MODELS = ("trailing", "bgnbd", "mbgnbd", "pareto", "lightgbm", "hybrid")
COLUMNS = ["origin", "normalized_gini", "spearman", "top10_share", "top20_share",
           "decile_mape", "aggregate_ratio", "mae", "interval_coverage"]


def datasets(n_accounts: int, seed: int):
    """(name, transactions, accounts, horizon_days, origins, references) for every log.

    ``references(origin, horizon)`` (None for real data) gives the simulator's expected
    value from the accounts' latent parameters (the oracle: the ceiling no model can be
    expected to pass) and its posterior mean given each account's orders (the Bayes
    reference: what the log allows a model that knows the story).
    """
    yield ("cdnow", load_cdnow(), None, HOLDOUT_DAYS, [date.fromisoformat(CALIBRATION_END)],
           None)
    variants = [(v, 365, rolling_origins(date(2024, 1, 1), 2, 182))
                for v in ("base", "no_attributes", "growth_heavy", "churn_heavy")]
    variants.append(("short_history", 182, [date(2021, 10, 1)]))
    for variant, horizon, origins in variants:
        tx, acc = simulate_b2b(n_accounts, variant=variant, seed=seed)

        def references(origin, h, variant=variant):
            kwargs = dict(variant=variant, seed=seed, as_of=origin.isoformat(), horizon_days=h)
            return expected_value(n_accounts, **kwargs), posterior_reference(n_accounts, **kwargs)

        yield (f"sim-{variant}", tx, acc, horizon, origins, references)


VALUE_GOALS = ("champion", "d_gini", "d_spearman", "decile_mape", "best_peer_decile_mape",
               "aggregate_ratio", "coverage", "oracle_gini", "oracle_spearman",
               "reference_d_gini", "reference_d_spearman")


def run_dataset(name, tx, acc, horizon, origins, seed, references=None):
    config = Config(horizon_days=horizon, models=MODELS, seed=seed)
    log = load_transactions(tx, label=name)
    accounts = load_accounts(acc) if acc is not None and acc.shape[1] > 1 else None
    tables, checks = [], []
    for origin in origins:
        started = time.perf_counter()
        result = evaluate_origin(log, origin, config, accounts)
        table = result.table[[c for c in COLUMNS if c in result.table]].copy()
        table.index = [f"keyltv ({result.champion})" if i == "keyltv" else i
                       for i in table.index]
        check = goal_checks(name, origin, result)
        best = result.table.loc[[p for p in PEERS if p in result.table.index]].max()
        if references is not None:
            expected, posterior = references(origin, horizon)
            row, ceiling = oracle_ceiling(result, expected, config)
            table.loc["oracle (latent parameters)"] = {"origin": origin, **row}
            check.update(ceiling)
            row = reference_row(result, posterior[0])
            table.loc["Bayes reference (estimated parameters)"] = {"origin": origin, **row}
            check.update(reference_d_gini=row["normalized_gini"] - best["normalized_gini"],
                         reference_d_spearman=row["spearman"] - best["spearman"])
            check.update(reference_events(result, posterior[1], config))
        tables.append(table)
        checks.append(check)
        print(f"  {name} @ {origin}: {time.perf_counter() - started:.0f} s, "
              f"{len(result.outer.predictions)} accounts", file=sys.stderr)
    return pd.concat(tables), checks


def goal_checks(name, origin, result) -> dict:
    """The issue's goals for one origin: champion vs the best peer."""
    t = result.table
    peers = t.loc[[p for p in PEERS if p in t.index]]
    best = {m: peers[m].max() for m in ("normalized_gini", "spearman")}
    best["decile_mape"] = peers["decile_mape"].min()
    k = t.loc["keyltv"]
    events = result.outer.event_metrics
    return {
        "dataset": name, "origin": origin, "champion": result.champion,
        "d_gini": k["normalized_gini"] - best["normalized_gini"],
        "d_spearman": k["spearman"] - best["spearman"],
        "decile_mape": k["decile_mape"], "best_peer_decile_mape": best["decile_mape"],
        "aggregate_ratio": k["aggregate_ratio"], "coverage": result.coverage,
        "decline_auc": events.get("decline_auc", np.nan),
        "decline_auc_1_minus_p_alive": events.get("decline_auc_1_minus_p_alive", np.nan),
        "growth_auc": events.get("growth_auc", np.nan),
        **result.flags,
    }


def reference_row(result, posterior):
    """The Bayes reference's value metrics on the accounts keyltv scored."""
    p = result.outer.predictions
    return value_metrics(p["actual"], posterior.reindex(p.index))


def reference_events(result, draws, config):
    """What the Bayes reference's event chances reach, as the oracle's ratios do.

    Its chance of decline (of growth) is the share of its posterior draws of future
    value in which the event happens, by the events' own definition (``event_labels``).
    Its expected value over trailing value would not do: every account has a positive
    expectation, so the accounts without trailing value would all rank first for growth.
    """
    p, events = result.outer.predictions, result.outer.events
    trailing = p["trailing_value"].clip(lower=0).to_numpy()[:, None]
    sampled = draws.reindex(p.index).to_numpy()
    decline_risk, growth_chance = (e.mean(axis=1) for e in event_labels(trailing, sampled, config))
    had_value = trailing[:, 0] > 0
    valuable = _valuable(result, config)
    decline, growth = events["decline"].to_numpy(), events["growth"].to_numpy()
    return {
        "reference_decline_auc": auc(decline[had_value], decline_risk[had_value]),
        "reference_growth_auc": auc(growth, growth_chance),
        "reference_at_risk_best_recall_p60": best_recall_at_precision(
            decline[valuable], decline_risk[valuable], 0.6),
        "reference_high_potential_best_recall_p50": best_recall_at_precision(
            growth[valuable], growth_chance[valuable], 0.5),
    }


def _valuable(result, config):
    """keyltv's valuable accounts at this origin, the population of its flags."""
    p = result.outer.predictions
    return valuable_mask(pd.DataFrame({"trailing_value": p["trailing_value"].clip(lower=0),
                                       "predicted_value": p[result.champion]}),
                         config.flags).to_numpy()


def oracle_ceiling(result, expected, config):
    """The oracle's value metrics, and what its ratio to trailing value reaches as a flag.

    The oracle's decline score is ``-expected / trailing`` and its growth score
    ``expected / trailing``, over the same valuable accounts as keyltv's flags.
    """
    p, events = result.outer.predictions, result.outer.events
    expected = expected.reindex(p.index).fillna(0.0)
    row = value_metrics(p["actual"], expected)
    trailing = p["trailing_value"].clip(lower=0).to_numpy()
    ratio = np.log1p(expected.to_numpy()) - np.log1p(trailing)
    had_value = trailing > 0
    valuable = _valuable(result, config)
    decline, growth = events["decline"].to_numpy(), events["growth"].to_numpy()
    return row, {
        "oracle_gini": row["normalized_gini"], "oracle_spearman": row["spearman"],
        "oracle_decline_auc": auc(decline[had_value], -ratio[had_value]),
        "oracle_growth_auc": auc(growth, ratio),
        "oracle_at_risk_best_recall_p60": best_recall_at_precision(
            decline[valuable], -ratio[valuable], 0.6),
        "oracle_high_potential_best_recall_p50": best_recall_at_precision(
            growth[valuable], ratio[valuable], 0.5),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=4000, help="simulated accounts")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--only", default=None, help="comma-separated dataset names")
    parser.add_argument("--out", default=None, help="also write the markdown here")
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else None
    lines, summary = [], []
    for name, tx, acc, horizon, origins, references in datasets(args.accounts, args.seed):
        if only and name not in only and name.removeprefix("sim-") not in only:
            continue
        table, checks = run_dataset(name, tx, acc, horizon, origins, args.seed, references)
        lines += [f"### {name} (horizon {horizon} days)", "",
                  table.to_markdown(floatfmt=".4f"), ""]
        summary += checks
    frame = pd.DataFrame(summary)
    key = ["dataset", "origin"]
    value_goals = [c for c in VALUE_GOALS if c in frame]
    lines += ["### Value goals: keyltv champion vs best peer (trailing, BG/NBD+GG, Pareto/NBD+GG)",
              "", frame[key + value_goals].to_markdown(index=False, floatfmt=".4f"), "",
              "### Event and flag goals (flags among valuable accounts; `best_recall_p60`: the "
              "best recall any threshold on the score reaches at precision 0.6)", "",
              frame[key + [c for c in frame if c not in key + value_goals]].to_markdown(
                  index=False, floatfmt=".3f"), ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            handle.write(text)


if __name__ == "__main__":
    main()
