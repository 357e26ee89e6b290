"""Speed and memory of keyltv against lifetimes and a bare DuckDB aggregate.

For each log size the script generates a synthetic transaction log (about 20 invoice
lines per account over four years; cached under ``outputs/bench/data``) and runs, each
in a fresh child process so that the peak resident memory belongs to that step alone:

=============  ==========================================================================
step           command
=============  ==========================================================================
features       ``keyltv features --transactions LOG --as-of AS_OF --out features.parquet``
capped         the same with ``engine.memory_limit: 300MB`` in a config: DuckDB spills
               above 300 MB (the trade of time for memory a small machine can make)
lifetimes      ``pandas.read_csv`` + ``lifetimes.utils.summary_data_from_transaction_data``
bgnbd          ``lifetimes.BetaGeoFitter().fit`` on that summary
duckdb         bare DuckDB ``GROUP BY customer_id`` of the same aggregates (the floor)
train          ``keyltv train`` into a fresh SQLite MLflow store
score          ``keyltv score`` with the model that ``train`` registered
=============  ==========================================================================

Time is wall time of the child; memory is its peak RSS (``wait4`` rusage, children of
the child included). Steps of lifetimes stop at ``--timeout`` seconds ("timeout").

Usage::

    python benchmarks/bench_speed.py                 # 100k, 1M, 5M, 20M lines
    python benchmarks/bench_speed.py --sizes 100k,1M
    python benchmarks/bench_speed.py --quick         # tiny run, a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

START = "2021-01-01"
AS_OF = "2025-01-01"  # day after the four simulated years; every step cuts here
DAYS = 1461
LINES_PER_ACCOUNT = 20
CHUNK_ACCOUNTS = 100_000
GENERATOR_VERSION = 1
STEPS = ("features", "capped", "lifetimes", "bgnbd", "duckdb", "train", "score")
CAPPED_LIMIT = "300MB"
LABELS = {
    "features": "keyltv features",
    "capped": f"keyltv features, memory_limit {CAPPED_LIMIT}",
    "lifetimes": "lifetimes read+summary",
    "bgnbd": "lifetimes BG/NBD fit",
    "duckdb": "DuckDB GROUP BY (floor)",
    "train": "keyltv train",
    "score": "keyltv score",
}


# ----------------------------------------------------------------------------- data


def parse_size(text: str) -> int:
    """``100k`` -> 100000, ``5M`` -> 5000000."""
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in ("k", "m") else text
    return int(float(number) * scale)


def size_label(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1_000}k"


def generate_log(n_lines: int, path: Path, *, seed: int = 0) -> dict[str, int]:
    """Write a synthetic log of about ``n_lines`` lines (CSV or Parquet by suffix).

    Accounts (``n_lines / 20``) have a gamma-mixed number of lines, an acquisition day
    (half before the start), an exponential lifetime, a lognormal basket and a margin
    rate. Lines fall uniformly inside the account's active span; 40% of them share the
    day of the account's previous line (multi-line invoices), 3% are returns. Chunks of
    100k accounts keep the generator's memory bounded.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    n_accounts = max(n_lines // LINES_PER_ACCOUNT, 1)
    tmp = path.with_name(path.name + ".part")
    schema = pa.schema([("customer_id", pa.string()), ("date", pa.date32()),
                        ("amount", pa.float64()), ("margin", pa.float64())])
    if path.suffix == ".csv":
        writer = pacsv.CSVWriter(str(tmp), schema,
                                 write_options=pacsv.WriteOptions(quoting_style="none"))
    else:
        writer = pq.ParquetWriter(str(tmp), schema)
    start = np.datetime64(START, "D")
    written = 0
    with writer:
        for first in range(0, n_accounts, CHUNK_ACCOUNTS):
            n = min(CHUNK_ACCOUNTS, n_accounts - first)
            rng = np.random.default_rng([seed, first])
            # Negative binomial with mean LINES_PER_ACCOUNT, at least one line each.
            lines = 1 + rng.negative_binomial(2, 2 / (2 + LINES_PER_ACCOUNT - 1), size=n)
            acquired = np.where(rng.random(n) < 0.5, 0, rng.integers(0, DAYS - 30, n))
            stop = np.minimum(DAYS, acquired + 30 + rng.exponential(3 * 365, n)).astype(int)
            basket = rng.lognormal(np.log(500.0), 1.0, n)
            margin_rate = rng.beta(4.0, 16.0, n)
            account = np.repeat(np.arange(n), lines)
            total = len(account)
            day = acquired[account] + (rng.random(total) * (stop - acquired)[account]).astype(int)
            day = day[np.lexsort((day, account))]
            same = rng.random(total) < 0.4
            same[0] = False
            same &= account == np.roll(account, 1)
            day = np.where(same, np.roll(day, 1), day)
            amount = basket[account] * rng.lognormal(0.0, 0.6, total)
            returned = rng.random(total) < 0.03
            amount = np.where(returned, -amount * rng.uniform(0.1, 1.0, total), amount)
            margin = (amount * margin_rate[account]).round(2)
            order = np.argsort(day, kind="stable")  # logs come sorted by date
            ids = pa.array([f"A{first + i:07d}" for i in range(n)])
            writer.write_table(pa.table({
                "customer_id": ids.take(pa.array(account[order])),
                "date": pa.array((start + day[order]).astype("datetime64[D]")),
                "amount": amount.round(2)[order],
                "margin": margin[order],
            }, schema=schema))
            written += total
    os.replace(tmp, path)
    return {"lines": written, "accounts": n_accounts}


def cached_log(n_lines: int, folder: Path, fmt: str, seed: int) -> tuple[Path, dict[str, int]]:
    """Generate the log once per (size, format, seed, generator version)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"tx_{size_label(n_lines)}_s{seed}_v{GENERATOR_VERSION}.{fmt}"
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        return path, json.loads(meta_path.read_text())
    started = time.perf_counter()
    meta = generate_log(n_lines, path, seed=seed)
    meta["generate_seconds"] = round(time.perf_counter() - started, 1)
    meta_path.write_text(json.dumps(meta))
    return path, meta


# ------------------------------------------------------------------ child-process steps


def step_lifetimes_summary(log: str, out: str) -> None:
    """What a lifetimes user writes: read the CSV, build the RFM summary."""
    import pandas as pd
    from lifetimes.utils import summary_data_from_transaction_data

    if log.endswith(".csv"):
        tx = pd.read_csv(log, dtype={"customer_id": str}, parse_dates=["date"])
    else:
        tx = pd.read_parquet(log)
        tx["date"] = pd.to_datetime(tx["date"])
    end = pd.Timestamp(AS_OF) - pd.Timedelta(days=1)
    summary = summary_data_from_transaction_data(
        tx, "customer_id", "date", monetary_value_col="amount", observation_period_end=end
    )
    summary.to_parquet(out)
    print(f"summary rows {len(summary)}")


def step_bgnbd(summary: str) -> None:
    """BG/NBD on the lifetimes summary, one row per customer (no compression).

    As lifetimes' docs advise, a fit that does not converge is retried with a penalizer.
    """
    import pandas as pd
    from lifetimes import BetaGeoFitter
    from lifetimes.utils import ConvergenceError

    frame = pd.read_parquet(summary)
    for penalizer in (0.0, 0.001, 0.01, 0.1):
        try:
            fitter = BetaGeoFitter(penalizer_coef=penalizer)
            fitter.fit(frame["frequency"], frame["recency"], frame["T"])
        except ConvergenceError:
            continue
        print(f"penalizer {penalizer}: {fitter.params_.to_dict()}")
        return
    raise SystemExit("BG/NBD did not converge")


def step_duckdb(log: str, out: str) -> None:
    """The floor: one GROUP BY of order days, first/last day and value, written out."""
    import duckdb

    reader = "read_csv" if log.endswith(".csv") else "read_parquet"
    literal = "'" + log.replace("'", "''") + "'"
    target = "'" + out.replace("'", "''") + "'"
    duckdb.sql(
        f"""COPY (SELECT customer_id, count(DISTINCT date) AS days, min(date) AS first_day,
                         max(date) AS last_day, sum(amount) AS value
                  FROM {reader}({literal}) WHERE date < DATE '{AS_OF}'
                  GROUP BY customer_id) TO {target} (FORMAT parquet)"""
    )


CHILD_STEPS = {"lifetimes": step_lifetimes_summary, "bgnbd": step_bgnbd, "duckdb": step_duckdb}


# -------------------------------------------------------------------------- measuring


@dataclass
class Measurement:
    """One step at one size."""

    seconds: float | None
    peak_mb: float | None
    status: str  # ok, timeout, failed, skipped
    cpu_seconds: float | None = None  # user + system: less sensitive to a busy machine

    def cell(self) -> str:
        if self.status == "ok":
            return f"{self.seconds:.1f} s / {self.peak_mb:,.0f} MB"
        if self.status == "timeout":
            return f"timeout (> {self.seconds:.0f} s)"
        return self.status


def measure(command: list[str], *, log_file: Path, timeout: float, env: dict | None = None,
            cwd: Path | None = None) -> Measurement:
    """Run ``command`` in a fresh process; wall time and peak RSS from ``wait4``."""
    with open(log_file, "w") as sink:
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env,
                                cwd=cwd, start_new_session=True)
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    if timed_out.is_set():
        return Measurement(timeout, None, "timeout")
    if proc.returncode != 0:
        tail = log_file.read_text(errors="replace").strip().splitlines()[-3:]
        print(f"    failed (exit {proc.returncode}): {' | '.join(tail)}", file=sys.stderr)
        return Measurement(None, None, "failed")
    return Measurement(seconds, usage.ru_maxrss / 1024, "ok", usage.ru_utime + usage.ru_stime)


def keyltv_command() -> list[str]:
    script = Path(sys.executable).with_name("keyltv")
    return [str(script)] if script.exists() else [sys.executable, "-m", "keyltv.cli"]


def best(runs: list[Measurement]) -> Measurement:
    """The fastest successful run (its own peak memory), else the first failure."""
    ok = [m for m in runs if m.status == "ok"]
    return min(ok, key=lambda m: m.seconds) if ok else runs[0]


def run_size(log: Path, work: Path, timeout: float, steps: tuple[str, ...],
             repeat: int = 1) -> dict[str, Measurement]:
    """All steps on one log, in order; a step whose input failed is skipped.

    With ``repeat`` > 1 every step runs that many times in rounds (all steps, then all
    again), so that a busy machine slows the steps alike, and the fastest run counts.
    """
    work.mkdir(parents=True, exist_ok=True)
    store = work / "store"
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir()
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}",
           "PYTHONWARNINGS": "ignore"}
    keyltv = keyltv_command()
    me = [sys.executable, str(Path(__file__).resolve()), "--step"]
    summary = work / "lifetimes_summary.parquet"
    capped = work / "capped.yaml"
    capped.write_text(f"engine:\n  memory_limit: {CAPPED_LIMIT}\n")
    commands = {
        "features": keyltv + ["features", "--transactions", str(log), "--as-of", AS_OF,
                              "--out", str(work / "features.parquet")],
        "capped": keyltv + ["features", "--transactions", str(log), "--as-of", AS_OF,
                            "--out", str(work / "features_capped.parquet"),
                            "--config", str(capped)],
        "lifetimes": me + ["lifetimes", str(log), str(summary)],
        "bgnbd": me + ["bgnbd", str(summary)],
        "duckdb": me + ["duckdb", str(log), str(work / "duckdb.parquet")],
        "train": keyltv + ["train", "--transactions", str(log), "--as-of", AS_OF,
                           "--project-dir", str(store)],
        "score": keyltv + ["score", "--transactions", str(log), "--as-of", AS_OF,
                           "--out", str(work / "scores.parquet"), "--project-dir", str(store)],
    }
    needs = {"bgnbd": "lifetimes", "score": "train"}
    runs: dict[str, list[Measurement]] = {step: [] for step in steps}
    for _ in range(repeat):
        for step in steps:
            before = needs.get(step)
            if before in runs and best(runs[before]).status != "ok":
                runs[step].append(Measurement(None, None, "skipped"))
                continue
            limit = timeout if step in ("lifetimes", "bgnbd") else 4 * 3600
            runs[step].append(measure(commands[step], log_file=work / f"{step}.log",
                                      timeout=limit, env=env, cwd=work))
            print(f"  {LABELS[step]:<26} {runs[step][-1].cell()}", flush=True)
    return {step: best(ms) for step, ms in runs.items()}


# -------------------------------------------------------------------------- reporting


def fit_line(x: list[float], y: list[float]) -> tuple[float, float]:
    """Least-squares ``y = a + b x``; returns ``(b, a)``."""
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxx = sum((xi - mx) ** 2 for xi in x)
    b = sum((xi - mx) * (yi - my) for xi, yi in zip(x, y, strict=True)) / sxx
    return b, my - b * mx


def report(rows: list[dict]) -> str:
    """Markdown tables: every step per size, the goal ratios, and the slopes."""
    head = ["lines", "accounts", *(LABELS[s] for s in STEPS)]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [f"{row['lines']:,}", f"{row['accounts']:,}"]
        cells += [Measurement(**row["steps"][s]).cell() if s in row["steps"] else "-"
                  for s in STEPS]
        out.append("| " + " | ".join(cells) + " |")
    out += ["", "| lines | features: speed-up on lifetimes | features: peak memory / lifetimes' "
            f"| features: time / DuckDB floor | with {CAPPED_LIMIT}: speed-up on lifetimes "
            f"| with {CAPPED_LIMIT}: peak memory / lifetimes' | with {CAPPED_LIMIT}: time / "
            "DuckDB floor | train + score: time | train + score: peak |",
            "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        s = {k: Measurement(**v) for k, v in row["steps"].items()}
        lt, dd, tr, sc = (s.get(k) for k in ("lifetimes", "duckdb", "train", "score"))
        cells = [f"{row['lines']:,}"]
        for f in (s.get("features"), s.get("capped")):
            cells += goal_ratios(f, lt, dd)
        both = f"{tr.seconds + sc.seconds:.0f} s" if _ok(tr) and _ok(sc) else "-"
        peak = f"{max(tr.peak_mb, sc.peak_mb):,.0f} MB" if _ok(tr) and _ok(sc) else "-"
        out.append("| " + " | ".join([*cells, both, peak]) + " |")
    out += ["", *slopes(rows)]
    return "\n".join(out)


def _ok(m: Measurement | None) -> bool:
    return m is not None and m.status == "ok"


def goal_ratios(f: Measurement | None, lt: Measurement | None,
                dd: Measurement | None) -> list[str]:
    """The issue's three ratios for one features run: speed-up and memory against
    lifetimes, time against the DuckDB floor ("-" where a run is missing)."""
    speed = f"{lt.seconds / f.seconds:.1f}x" if _ok(f) and _ok(lt) else \
        (f"> {lt.seconds / f.seconds:.1f}x" if _ok(f) and lt and lt.status == "timeout"
         else "-")
    memory = f"{f.peak_mb / lt.peak_mb:.2f}x" if _ok(f) and _ok(lt) else "-"
    floor = f"{f.seconds / dd.seconds:.2f}x" if _ok(f) and _ok(dd) else "-"
    return [speed, memory, floor]


def slopes(rows: list[dict]) -> list[str]:
    """Seconds per million lines: least squares over sizes, and between the two largest.

    A marginal cost at the top that is no higher than the average one means time grows
    at most linearly (fixed costs such as imports and MLflow start-up are the intercept).
    """
    lines = []
    series = {"keyltv features": ("features",),
              f"keyltv features, memory_limit {CAPPED_LIMIT}": ("capped",),
              "keyltv train + score": ("train", "score"),
              "lifetimes read+summary": ("lifetimes",), "DuckDB floor": ("duckdb",)}
    for label, steps in series.items():
        x, y = [], []
        for row in rows:
            ms = [row["steps"].get(s) for s in steps]
            if all(m and m["status"] == "ok" for m in ms):
                x.append(row["lines"] / 1e6)
                y.append(sum(m["seconds"] for m in ms))
        if len(x) >= 2:
            b, a = fit_line(x, y)
            last = (y[-1] - y[-2]) / (x[-1] - x[-2])
            lines.append(f"- {label}: {b:.2f} s per million lines (least squares over "
                         f"{len(x)} sizes, intercept {a:.1f} s); {last:.2f} s per million "
                         f"between the two largest")
    return lines


def environment() -> str:
    import importlib.metadata as md

    versions = ", ".join(f"{p} {md.version(p)}" for p in
                         ("keyltv", "duckdb", "pandas", "lightgbm", "lifetimes"))
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} cores, {mem:.0f} GiB RAM, Python {platform.python_version()}; "
            f"{versions}")


# ------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100k,1M,5M,20M",
                        help="comma-separated line counts, e.g. 100k,1M,5M,20M")
    parser.add_argument("--quick", action="store_true", help="tiny run (20k, 50k lines)")
    parser.add_argument("--format", choices=("csv", "parquet"), default="csv",
                        help="file format of the generated logs (every step reads it)")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds before a lifetimes step is reported as a timeout")
    parser.add_argument("--steps", default=",".join(STEPS), help="subset of " + ",".join(STEPS))
    parser.add_argument("--out-dir", type=Path, default=Path("outputs/bench"),
                        help="generated logs, per-step logs and results.json")
    parser.add_argument("--out", type=Path, help="also write the report (markdown) here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per step and size; the fastest counts (noisy machines)")
    parser.add_argument("--from-results", type=Path, nargs="+",
                        help="print (and --out) the report of saved results.json files; run "
                             "nothing. With several, a later file's steps replace an earlier "
                             "one's for the same size (a rerun of some steps after a change)")
    parser.add_argument("--step", nargs="+", help=argparse.SUPPRESS)  # child-process entry
    args = parser.parse_args(argv)
    if args.step:
        CHILD_STEPS[args.step[0]](*args.step[1:])
        return 0
    if args.from_results:
        saved = [json.loads(path.read_text()) for path in args.from_results]
        header = f"{saved[0]['environment']}; logs: {saved[0]['format']}; " \
                 f"best of {saved[0].get('repeat', 1)} run(s)"
        if len(saved) > 1:
            header += "; steps merged from " + ", then ".join(
                f"{path} ({', '.join(sorted({s for r in d['rows'] for s in r['steps']}))})"
                for path, d in zip(args.from_results, saved, strict=True))
        return write_report(header, merge_rows([d["rows"] for d in saved]), args.out)
    sizes = [20_000, 50_000] if args.quick else [parse_size(s) for s in args.sizes.split(",")]
    steps = tuple(s for s in STEPS if s in args.steps.split(","))
    print(f"# keyltv speed benchmark\n{environment()}\nlogs: {args.format}, as of {AS_OF}, "
          f"lifetimes timeout {args.timeout:.0f} s, best of {args.repeat}\n", flush=True)
    rows = []
    for n in sizes:
        log, meta = cached_log(n, args.out_dir / "data", args.format, args.seed)
        print(f"{size_label(n)}: {meta['lines']:,} lines, {meta['accounts']:,} accounts "
              f"({log.name}, {log.stat().st_size / 2**20:,.0f} MiB)", flush=True)
        results = run_size(log.resolve(), (args.out_dir / "runs" / size_label(n)).resolve(),
                           args.timeout, steps, args.repeat)
        rows.append({"size": size_label(n), **meta,
                     "steps": {k: asdict(v) for k, v in results.items()}})
        (args.out_dir / "results.json").write_text(json.dumps(
            {"environment": environment(), "format": args.format, "repeat": args.repeat,
             "rows": rows}, indent=1))
    return write_report(f"{environment()}; logs: {args.format}; best of {args.repeat} run(s)",
                        rows, args.out)


def merge_rows(runs: list[list[dict]]) -> list[dict]:
    """Rows by size, in order of lines; a later run's steps replace an earlier run's."""
    merged: dict[str, dict] = {}
    for rows in runs:
        for row in rows:
            into = merged.setdefault(row["size"], {**row, "steps": {}})
            into["steps"].update(row["steps"])
    return sorted(merged.values(), key=lambda row: row["lines"])


def write_report(header: str, rows: list[dict], out: Path | None) -> int:
    """Print the report and, with ``out``, write it there too."""
    text = f"{header}\n\n{report(rows)}\n"
    print("\n" + text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
