"""Command-line interface: wiring only; the jobs live in :mod:`keyltv.workflows`.

Exit codes: 0 ok, 1 internal error, 2 bad input (one line on stderr, no traceback).
Set ``KEYLTV_DEBUG=1`` to see the traceback of an internal error.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import sys
import warnings
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from keyltv.data.schema import InputError

if TYPE_CHECKING:  # imported where used: keyltv features starts without pandas
    import pandas as pd

# No no_args_is_help: a bare `keyltv` is a usage error (see _options), not a help request.
app = typer.Typer(add_completion=False,
                  help="keyltv: key-account lifetime value from a transaction log.")


def _version(show: bool) -> None:
    if show:
        from keyltv import __version__

        _echo(f"keyltv {__version__}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def _options(ctx: typer.Context, version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False
             ) -> None:
    # The app's own options; its help text is the Typer(help=...) above.
    if ctx.invoked_subcommand is None and not ctx.resilient_parsing:
        _refuse_missing_command(ctx)


def _refuse_missing_command(ctx: typer.Context) -> None:
    """Print the help on stderr and stop with a usage error (exit code 2).

    A bare ``keyltv`` printed the help and exited 0, so a scheduler whose job lost its
    arguments saw a success. Like any usage error it now exits 2 with one ``error:``
    line, and the help goes to stderr with it: stdout holds a job's report, and a
    scheduler keeps a failed job's stderr. ``keyltv --help`` still prints to stdout and
    exits 0.

    Raises
    ------
    InputError
        Always; naming the commands.
    """
    # Typer's rich help prints itself to stdout (get_help returns ""); plain click's
    # help comes back as text.
    with contextlib.redirect_stdout(sys.stderr):
        text = ctx.get_help()
    if text.strip():
        typer.echo(text, err=True)
    commands = ", ".join(ctx.command.list_commands(ctx))  # in the help's order
    raise InputError(f"no command given; expected one of {commands}")

TransactionsOpt = Annotated[Path, typer.Option("--transactions", help="Transaction log: a CSV file (perhaps gzipped, .csv.gz) or Parquet file, a folder of part files, or a quoted glob such as 'exports/*.csv'.")]
AccountsOpt = Annotated[Path | None, typer.Option("--accounts", help="Account attribute table (CSV, gzipped CSV or Parquet; a file, folder or glob).")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML config (see configs/).")]
AsOfOpt = Annotated[str | None, typer.Option("--as-of", help="Cut date YYYY-MM-DD; default: day after the last transaction.")]
HorizonOpt = Annotated[int | None, typer.Option("--horizon-days", help="Prediction horizon in days; default: the config's horizon_days (365). score: the model's horizon, the only one accepted.")]
ProjectOpt = Annotated[Path | None, typer.Option("--project-dir", help="Folder of the MLflow store (mlflow.db, mlartifacts/); when given, it wins over MLFLOW_TRACKING_URI and tracking.uri. Default: the working directory.")]


def _echo(message: str = "") -> None:
    """Print a line of the job's report on stdout; a closed stdout never stops the job.

    The printed lines only describe the job: its results are its files and its MLflow
    run. When the reader has gone (``keyltv score ... | head -c 0``), a write raises
    BrokenPipeError, which Typer turned into a silent exit 1 after the outputs were
    written (audit 22), and which stopped ``evaluate`` before its JSON. stdout is then
    pointed at os.devnull, as in Python's "Note on SIGPIPE", so that the later lines and
    the flush at exit succeed, and the job goes on: its exit code is the job's.
    """
    try:
        typer.echo(message)
    except BrokenPipeError:
        _stdout_to_devnull()


def _stdout_to_devnull() -> None:
    """Point the stdout file descriptor at os.devnull; any text still buffered goes there."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)
    logging.getLogger("keyltv").info("stdout was closed by its reader: the rest of the "
                                     "report is not printed, the job goes on")


def _parse_date(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise InputError(f"{option} {value!r}: expected a date as YYYY-MM-DD") from None


def _check_horizon(horizon_days: int) -> None:
    from keyltv.config import MAX_HORIZON_DAYS

    if horizon_days <= 0:
        raise InputError(f"--horizon-days {horizon_days}: must be a positive number of days")
    if horizon_days > MAX_HORIZON_DAYS:
        raise InputError(f"--horizon-days {horizon_days}: at most {MAX_HORIZON_DAYS} days "
                         "(ten years)")


def _config(path: Path | None, horizon_days: int | None):
    from keyltv.config import load_config

    config = load_config(path)
    if horizon_days is not None:
        _check_horizon(horizon_days)
        config = config.with_overrides(horizon_days=horizon_days)
    return config


def _print_table(frame: pd.DataFrame) -> None:
    import pandas as pd

    with pd.option_context("display.width", 160, "display.max_columns", 30,
                           "display.float_format", "{:.4f}".format):
        _echo(frame.to_string())


@app.command()
def train(transactions: TransactionsOpt, accounts: AccountsOpt = None, config: ConfigOpt = None,
          as_of: AsOfOpt = None, horizon_days: HorizonOpt = None,
          project_dir: ProjectOpt = None) -> None:
    """Backtest every model, register the champion as models:/NAME@champion (tracking.model_name, keyltv by default)."""
    from keyltv import workflows

    cfg = _config(config, horizon_days)
    inputs = workflows.load_inputs(transactions, accounts, cfg, _parse_date(as_of, "--as-of"))
    # The inputs first: a refused log leaves no tracking store behind.
    workflows.check_trainable(inputs, cfg)
    store = workflows.open_store(cfg, project_dir)
    result = workflows.train(inputs, cfg, store)
    _report_training(result, cfg)
    _print_notes(inputs.notes)


def _report_training(result, cfg) -> None:
    bt = result.backtest
    _echo(f"Backtest: fitted before {bt.cutoff}, judged on [{bt.cutoff}, +{bt.horizon_days} days) "
          f"over {len(bt.predictions)} accounts")
    _print_table(bt.table)
    for name, why in bt.skipped.items():
        _echo(f"skipped {name}: {why}")
    events = ", ".join(f"{k}={v:.4f}" for k, v in bt.event_metrics.items())
    _echo(f"Events: {events}")
    _echo(f"Champion: {result.champion} (by {cfg.selection.metric})")
    from keyltv.workflows import flag_threshold_summary

    _echo(f"Flag thresholds: {flag_threshold_summary(result.flag_thresholds, cfg)}")
    _echo(f"Run id: {result.run_id}")
    state = "now @champion" if result.promoted else "registered without the champion alias"
    _echo(f"Model version: {cfg.tracking.model_name}/{result.version}, {state}: {result.reason}")


@app.command()
def score(transactions: TransactionsOpt,
          out: Annotated[Path, typer.Option("--out", help="Output file, .csv or .parquet.")],
          accounts: AccountsOpt = None, config: ConfigOpt = None,
          model: Annotated[str | None, typer.Option("--model", help="Model URI; default: models:/NAME@champion, NAME being tracking.model_name (keyltv).")] = None,
          as_of: AsOfOpt = None, horizon_days: HorizonOpt = None,
          previous: Annotated[Path | None, typer.Option("--previous", help="Earlier score file (CSV, gzipped CSV or Parquet), for tier migrations.")] = None,
          report: Annotated[Path | None, typer.Option("--report", help="Also write a self-contained HTML report here.")] = None,
          project_dir: ProjectOpt = None) -> None:
    """Score every account seen before --as-of with a registered model (no retraining)."""
    from keyltv import workflows
    from keyltv.data.outputs import check_writable

    cfg = _config(config, None)
    if horizon_days is not None:
        _check_horizon(horizon_days)
    given = {"--transactions": transactions, "--accounts": accounts, "--previous": previous}
    check_writable(out, inputs=given)  # fail before the expensive work
    if report is not None:
        check_writable(report, suffixes=(".html",), inputs=given)
    # A registry or run URI needs the store to exist (checked before the expensive work,
    # and opening an existing store creates nothing); a model folder does not, and its
    # store is opened once the inputs passed, so that a refused log leaves none behind.
    model = model or f"models:/{cfg.tracking.model_name}@champion"
    registered = model.lower().startswith(("models:", "runs:"))
    store = workflows.open_store(cfg, project_dir, existing=True) if registered else None
    inputs = workflows.load_inputs(transactions, accounts, cfg, _parse_date(as_of, "--as-of"))
    if store is None:
        store = workflows.open_store(cfg, project_dir)
    result = workflows.score(inputs, cfg, store, model, horizon_days, previous)
    _write_outputs(workflows, store, result, inputs, out, report, previous)


def _write_outputs(workflows, store, result, inputs, out: Path, report: Path | None,
                   previous: Path | None = None) -> None:
    """Scores and report, each written atomically inside the MLflow scoring run."""
    run_id = workflows.publish_scores(store, result, inputs, out, report, previous)
    _echo(f"Scored {len(result.scores)} accounts as of {inputs.as_of} with "
          f"{result.model_version} -> {out}" + (f", report -> {report}" if report else ""))
    _echo(f"Scoring run {run_id} in {store.display_uri}")
    if result.flag_thresholds:  # exact: rounded, a threshold can misplace a recount
        _echo("Flag thresholds: " + "; ".join(f"{name}={value!r} ({source})" for name, (
            value, source) in result.flag_thresholds.items()))
    _print_notes(result.notes)
    for warning in result.warnings:
        _echo(f"note: {warning}")


@app.command()
def evaluate(transactions: TransactionsOpt,
             cutoff: Annotated[str, typer.Option("--cutoff", help="Last origin YYYY-MM-DD; earlier ones step back by backtest.step_days.")],
             horizon_days: Annotated[int, typer.Option("--horizon-days", help="Prediction horizon in days.")],
             accounts: AccountsOpt = None, config: ConfigOpt = None,
             out: Annotated[Path | None, typer.Option("--out", help="Write the metrics as JSON.")] = None) -> None:
    """Rolling-origin backtest: every model and peer, and keyltv's nested champion."""
    import json

    from keyltv import workflows
    from keyltv.data.outputs import check_writable, write_text

    cfg = _config(config, horizon_days)
    last = _parse_date(cutoff, "--cutoff")
    if out is not None:
        check_writable(out, suffixes=(".json",))
    # evaluate cuts at --cutoff: the log's last day sets nothing, so it is not checked.
    inputs = workflows.load_inputs(transactions, accounts, cfg, None, check_last_day=False)
    results = workflows.evaluate(inputs, cfg, last)
    for result in results:
        _echo(f"\nOrigin {result.origin}: keyltv champion = {result.champion}, "
              f"80% interval coverage {result.coverage:.3f}")
        _print_table(result.table.drop(columns=["origin", "champion"]))
        for name, why in result.outer.skipped.items():  # as train says them
            _echo(f"skipped {name}: {why}")
        extra = {**result.outer.event_metrics, **result.flags}
        _echo("Events and flags: " + ", ".join(f"{k}={v:.4f}" for k, v in extra.items()))
        if result.threshold_sources:
            _echo("Flag thresholds from: " + "; ".join(
                f"{k}: {v}" for k, v in result.threshold_sources.items()))
        if result.season:  # a year and a horizon of log before the origin
            _echo("Next horizon over the trailing one: " + ", ".join(
                f"{k} {v:.2f}x" for k, v in result.season.items())
                + " (year_ago: the accounts of a year earlier, around the same day)")
    _print_notes(inputs.notes)
    if out is not None:
        write_text(json.dumps(workflows.evaluation_json(results), indent=2), out)
        _echo(f"Metrics -> {out}")


def _print_notes(notes: dict[str, int]) -> None:
    counted = ", ".join(f"{k}={v}" for k, v in notes.items() if v)
    if counted:
        _echo(f"Counted: {counted}")


@app.command()
def features(transactions: TransactionsOpt,
             as_of: Annotated[str, typer.Option("--as-of", help="Cut date YYYY-MM-DD; features use only earlier transactions.")],
             out: Annotated[Path, typer.Option("--out", help="Output file, .csv or .parquet.")],
             accounts: AccountsOpt = None, config: ConfigOpt = None,
             horizon_days: HorizonOpt = None) -> None:
    """Write the per-account feature table at --as-of (no model, no MLflow store); docs/features.md defines each column."""
    # keyltv.inputs, not keyltv.workflows: no models or MLflow to import, a faster start.
    from keyltv.data.outputs import check_writable
    from keyltv.inputs import load_inputs, write_feature_table

    cfg = _config(config, horizon_days)
    cut = _parse_date(as_of, "--as-of")
    # Fail before the expensive work.
    check_writable(out, inputs={"--transactions": transactions, "--accounts": accounts})
    inputs = load_inputs(transactions, accounts, cfg, cut)
    written = write_feature_table(inputs, cfg, out)
    _echo(f"Features of {written} accounts as of {inputs.as_of} "
          f"({cfg.horizon_days}-day horizon) -> {out}")
    _print_notes(inputs.notes)


@app.command()
def demo(config: ConfigOpt = None, horizon_days: HorizonOpt = None,
         out: Annotated[Path, typer.Option("--out", help="Score file to write.")] = Path("outputs/cdnow_scores.csv"),
         project_dir: ProjectOpt = None) -> None:
    """Train and score on the bundled CDNOW log; print top key accounts and flag counts."""
    from keyltv import workflows
    from keyltv.data.cdnow import load_cdnow
    from keyltv.data.outputs import check_writable

    cfg = _config(config, horizon_days)
    # Fail before training and registering a model, as score and features do.
    out.parent.mkdir(parents=True, exist_ok=True)
    check_writable(out)
    check_writable(out.with_suffix(".html"), suffixes=(".html",))
    store = workflows.open_store(cfg, project_dir)
    inputs = workflows.load_inputs(load_cdnow(), None, cfg, None, label="CDNOW_master.txt")
    _echo(f"CDNOW: {inputs.log.n_lines} lines, {inputs.log.n_accounts} accounts, "
          f"{inputs.log.first_date} to {inputs.log.last_date}; as of {inputs.as_of}")
    trained = workflows.train(inputs, cfg, store)
    _report_training(trained, cfg)
    model_uri = f"models:/{cfg.tracking.model_name}/{trained.version}"
    result = workflows.score(inputs, cfg, store, model_uri)
    _echo("")
    _write_outputs(workflows, store, result, inputs, out, out.with_suffix(".html"))
    _echo("Top key accounts:")
    _print_table(workflows.top_accounts(result.scores))
    _echo("\nFlag and segment counts:")
    _print_table(workflows.flag_counts(result.scores).to_frame("accounts"))


class Terminated(BaseException):
    """SIGTERM, raised in the main thread (a BaseException, as KeyboardInterrupt is)."""


# Signals received, so that an error raised by the interrupted work still reads as the
# signal: DuckDB turns the exception a handler raises mid-query into its own
# "Query interrupted" RuntimeError, which was reported as an internal error, exit 1
# (audit 28).
_SIGNALLED: list[int] = []


def _terminate(signum: int, frame: object) -> None:
    _SIGNALLED.append(signal.SIGTERM)
    raise Terminated()


def _interrupt(signum: int, frame: object) -> None:
    _SIGNALLED.append(signal.SIGINT)
    raise KeyboardInterrupt


_LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"


@contextlib.contextmanager
def progress_display(console: object | None = None) -> object:
    """On a terminal, a live line under the log: a spinner, the current step, the time.

    A scheduler's job writes to a file or a pipe, where a redrawn line is noise: there
    the log lines are all there is (:func:`main` shows this only when stderr is a
    terminal). The steps are the job's own INFO lines (data loaded, backtest started,
    each model fitted, run recorded), printed above the live line as they come, so the
    same words tell where a batch log and a terminal stand. The line is removed when the
    job ends, before its result or its one ``error:`` line is printed.
    """
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = console or Console(stderr=True)
    bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                   console=console, transient=True)
    task = bar.add_task("starting", total=None)

    class Live(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            bar.console.print(self.format(record), markup=False, highlight=False,
                              soft_wrap=True)
            bar.update(task, description=record.getMessage().split(":")[0][:70])

    handler = Live()
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    root = logging.getLogger()
    plain = [h for h in root.handlers if isinstance(h, logging.StreamHandler)]
    for h in plain:
        root.removeHandler(h)
    root.addHandler(handler)
    try:
        with bar:
            yield bar
    finally:
        root.removeHandler(handler)
        for h in plain:
            root.addHandler(h)


def _ignore_sigterm_from_now() -> None:
    """Let a SIGTERM that comes after the job has finished change nothing.

    Its files and runs are final; a scheduler's SIGTERM during the interpreter's
    shutdown (about a second) made a finished job exit 143, or die by the signal, and
    be retried (audit 28). A handler that does nothing covers the shutdown's first
    part, and SIG_IGN, set at exit, the last (Python resets its own handlers to the
    default then). Not SIG_IGN at once: the process's later children inherit an ignored
    signal, and a multiprocessing pool started after ``main`` returned in the same
    process (the test suite) could no longer stop its workers.
    """
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    atexit.register(signal.signal, signal.SIGTERM, signal.SIG_IGN)


def main() -> None:
    """Entry point: run the app, map errors to exit codes 2 (input) and 1 (internal)."""
    # LightGBM's OpenMP threads spin while waiting by default, which stalls a 2-core
    # machine shared with other jobs; passive waiting costs nothing when it is idle.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    logging.basicConfig(level=logging.INFO, format=_LOG_FORMAT, stream=sys.stderr)
    warnings.filterwarnings("ignore", module="mlflow")
    debug = os.environ.get("KEYLTV_DEBUG") == "1"
    if not debug:
        # MLflow logs a store's failure with a page of traceback (a locked or read-only
        # SQLite store) and a pickling WARNING on every train; keyltv reports what went
        # wrong in one line, and KEYLTV_DEBUG=1 brings MLflow's logs back.
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "CRITICAL")
    # A scheduler's timeout sends SIGTERM: unwind like an interrupt, so that the MLflow
    # run ends as failed and temporary files are removed (the default kills at once).
    _SIGNALLED.clear()
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        # A live progress line only on a terminal: a batch log gets the plain lines.
        live = sys.stderr.isatty() and os.environ.get("KEYLTV_NO_PROGRESS") != "1"
        with progress_display() if live else contextlib.nullcontext():
            code = app(standalone_mode=False)
        if not code:
            _ignore_sigterm_from_now()
            signal.signal(signal.SIGINT, signal.default_int_handler)
        # Typer turns Ctrl-C (SIGINT) into Exit(130) and, outside standalone mode,
        # returns that code instead of raising: ignored, an interrupted job exited 0 with
        # nothing said, a success to its scheduler (audit 28).
        if isinstance(code, int) and code != 0:
            if code == 130:
                typer.echo("error: interrupted", err=True)
            sys.exit(code)
    except InputError as exc:
        typer.echo(f"error: {_one_line(exc)}", err=True)
        sys.exit(2)
    except Terminated:
        typer.echo("error: terminated (SIGTERM)", err=True)
        sys.exit(128 + signal.SIGTERM)
    except (typer.Exit, SystemExit) as exc:
        sys.exit(getattr(exc, "exit_code", getattr(exc, "code", 0)))
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("error: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # usage errors (typer's own click) are input errors too
        if signal.SIGTERM in _SIGNALLED:
            typer.echo("error: terminated (SIGTERM)", err=True)
            sys.exit(128 + signal.SIGTERM)
        if signal.SIGINT in _SIGNALLED:
            typer.echo("error: interrupted", err=True)
            sys.exit(130)
        if hasattr(exc, "format_message") and isinstance(exc, typer.TyperException):
            typer.echo(f"error: {_one_line(exc.format_message())}", err=True)
            sys.exit(2)
        if debug:
            raise
        if type(exc).__name__ == "StoreError":  # keyltv.tracking's (mlflow not imported here)
            typer.echo(f"error: {_one_line(exc)}", err=True)
            sys.exit(1)
        if type(exc).__name__ == "OutOfMemoryException":  # duckdb's, not imported here
            # DuckDB's first line says what it lacked; its tips (SET ...) are not ours.
            lack = str(exc).strip().splitlines()[0] if str(exc).strip() else "out of memory"
            typer.echo(f"error: {_one_line(lack)}; raise engine.memory_limit in the config "
                       "(or remove it) or free memory", err=True)
            sys.exit(1)
        typer.echo(f"internal error: {exc.__class__.__name__}: {_one_line(exc)} "
                   "(set KEYLTV_DEBUG=1 for the traceback)", err=True)
        sys.exit(1)


def _one_line(message: object) -> str:
    """Join a message into one line and mask any password in a URI."""
    from keyltv.data.schema import redact_text

    return redact_text(" ".join(str(message).split()))


if __name__ == "__main__":
    main()
