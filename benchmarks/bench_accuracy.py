"""Accuracy benchmark: keyltv's champion against its peers, on real and simulated logs.

For every dataset and origin, :func:`keyltv.evaluation.backtest.evaluate_origin` fits
every model on data before the origin, and the ``keyltv`` row is the champion that
``keyltv train`` would have chosen with only that data (nested selection), judged on
the next horizon. Peers run in the same call: naive trailing value, BG/NBD +
Gamma-Gamma, Pareto/NBD + Gamma-Gamma.

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
from keyltv.data.cdnow import CALIBRATION_END, HOLDOUT_DAYS, load_cdnow
from keyltv.data.io import load_accounts, load_transactions
from keyltv.data.simulate import simulate_b2b
from keyltv.evaluation.backtest import evaluate_origin, rolling_origins

PEERS = ("trailing", "bgnbd", "pareto")
MODELS = ("trailing", "bgnbd", "mbgnbd", "pareto", "lightgbm", "hybrid")
COLUMNS = ["origin", "normalized_gini", "spearman", "top10_share", "top20_share",
           "decile_mape", "aggregate_ratio", "mae", "interval_coverage"]


def datasets(n_accounts: int, seed: int):
    """(name, transactions, accounts, horizon_days, origins) for every benchmark log."""
    yield ("cdnow", load_cdnow(), None, HOLDOUT_DAYS, [date.fromisoformat(CALIBRATION_END)])
    for variant in ("base", "no_attributes", "growth_heavy", "churn_heavy"):
        tx, acc = simulate_b2b(n_accounts, variant=variant, seed=seed)
        yield (f"sim-{variant}", tx, acc, 365, rolling_origins(date(2024, 1, 1), 2, 182))
    tx, acc = simulate_b2b(n_accounts, variant="short_history", seed=seed)
    yield ("sim-short_history", tx, acc, 182, [date(2021, 10, 1)])


def run_dataset(name, tx, acc, horizon, origins, seed):
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
        tables.append(table)
        checks.append(goal_checks(name, origin, result))
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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=4000, help="simulated accounts")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--only", default=None, help="comma-separated dataset names")
    parser.add_argument("--out", default=None, help="also write the markdown here")
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else None
    lines, summary = [], []
    for name, tx, acc, horizon, origins in datasets(args.accounts, args.seed):
        if only and name not in only and name.removeprefix("sim-") not in only:
            continue
        table, checks = run_dataset(name, tx, acc, horizon, origins, args.seed)
        lines += [f"### {name} (horizon {horizon} days)", "",
                  table.to_markdown(floatfmt=".4f"), ""]
        summary += checks
    frame = pd.DataFrame(summary)
    lines += ["### Goals: keyltv champion vs best peer (trailing, BG/NBD+GG, Pareto/NBD+GG)", "",
              frame.to_markdown(index=False, floatfmt=".4f"), ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            handle.write(text)


if __name__ == "__main__":
    main()
