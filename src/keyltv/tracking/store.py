"""MLflow store: where runs go, how the champion is logged and registered.

The tracking URI is always set explicitly (MLflow 3's implicit default depends on the
working directory and on whether a ``./mlruns`` folder happens to exist). Registry
aliases (``@champion``) are used, not the deprecated stages.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import signal
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

import cloudpickle
import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from keyltv.data.schema import InputError, redact_text, redact_uri
from keyltv.tracking.pyfunc import (
    BUNDLE_ARTIFACT,
    KeyLTVPyfunc,
    bundle_outputs,
    headline,
    keyltv_source,
    plain_types,
    requirements,
)

# KeyLTVPyfunc is also looked up here by name: the pickles of models registered before it
# moved to keyltv.tracking.pyfunc call it keyltv.tracking.store.KeyLTVPyfunc.
__all__ = ["CHAMPION_ALIAS", "KeyLTVPyfunc", "Store", "connect", "resolve_tracking_uri"]

CHAMPION_ALIAS = "champion"
log = logging.getLogger("keyltv")


def resolve_tracking_uri(config_uri: str | None, project_dir: str | Path | None = None) -> str:
    """The tracking store's URI, the most explicit source first.

    A ``project_dir`` given on the command line (``--project-dir``) names its own SQLite
    store and wins: ``MLFLOW_TRACKING_URI``, often set machine-wide on a scheduler's
    hosts, silently sent such a job to another store. Without it:
    ``MLFLOW_TRACKING_URI``, else the config's URI, else SQLite in the working directory.
    """
    if project_dir is not None:
        return f"sqlite:///{Path(project_dir).resolve() / 'mlflow.db'}"
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    if config_uri:
        return config_uri
    return f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def check_store_exists(uri: str) -> None:
    """Refuse a ``sqlite:///`` store whose file does not exist, before MLflow creates it.

    Loading a registered model from such a store can only fail, and would leave an
    empty database behind (a refused job writes nothing). Other stores are not checked.

    Raises
    ------
    InputError
        If ``uri`` names a SQLite file that does not exist.
    """
    path = sqlite_file(uri)
    if path is not None and not path.exists():
        raise InputError(f"MLflow tracking store {redact_uri(uri)!r}: does not exist, so no "
                         "model is registered there; train one first with the same "
                         "--project-dir, or point MLFLOW_TRACKING_URI or tracking.uri at the "
                         "store that has it")


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///PATH`` URI; None for other stores and memory."""
    if not uri.lower().startswith("sqlite:///"):
        return None
    path = urlsplit(uri).path[1:]  # sqlite:///rel.db -> rel.db, sqlite:////abs.db -> /abs.db
    return Path(path) if path and path != ":memory:" else None


T = TypeVar("T")


@contextmanager
def sigterm_held() -> Iterator[None]:
    """Hold SIGTERM during a write to the store and deliver it right after.

    keyltv's CLI turns SIGTERM (a scheduler's timeout) into an exception, so that the
    run ends as failed; raised in the middle of an MLflow write, it left the SQLite
    transaction holding its lock, and ending the run then failed with "database is
    locked" (runs stayed RUNNING; a black-box audit at stop 19). Outside the main thread,
    where no handler can be set, this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # The Python handler is swapped, not the signal blocked: a blocked mask holds only
    # the main thread, and the kernel hands a process's SIGTERM to any thread that does
    # not block it (DuckDB's, LightGBM's), after which Python runs the handler in the
    # main thread at once (the suite's test of this failed that way once other tests
    # had started such threads).
    received: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        # None: a handler set outside Python, which cannot be restored; the default is.
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
        if received:
            signal.raise_signal(signal.SIGTERM)


def _held(method: Callable[..., T]) -> Callable[..., T]:
    """A store method that writes, run with SIGTERM held (see :func:`sigterm_held`)."""
    @functools.wraps(method)
    def wrapper(*args: object, **kwargs: object) -> T:
        with sigterm_held():
            return method(*args, **kwargs)
    return wrapper


@dataclass
class Store:
    """A connected MLflow store with keyltv's experiment and model name."""

    uri: str
    experiment_id: str
    model_name: str

    @property
    def display_uri(self) -> str:
        """The store's address for logs, any password masked."""
        return redact_uri(self.uri)

    @property
    def client(self) -> MlflowClient:
        """A client bound to this store's URI."""
        return MlflowClient(self.uri)

    @contextmanager
    def run(self, name: str, *, parent_id: str | None = None,
            tags: Mapping[str, str] | None = None) -> Iterator[str]:
        """Start a (child) run and yield its id; the run ends when the block exits.

        Raises
        ------
        StoreError
            If the store cannot record a run (a read-only or locked SQLite file).
        """
        try:
            with sigterm_held():
                active = mlflow.start_run(experiment_id=self.experiment_id, run_name=name,
                                          nested=parent_id is not None,
                                          parent_run_id=parent_id, tags=dict(tags or {}))
        except Exception as exc:  # MLflow's and SQLAlchemy's errors, whatever the backend
            raise StoreError(f"MLflow tracking store {self.display_uri!r}: cannot record a "
                             f"run ({_root_cause(exc)})") from exc
        try:
            yield active.info.run_id
        except BaseException:  # an error, an interrupt or SIGTERM: the run failed
            with sigterm_held():
                try:
                    mlflow.end_run("FAILED")
                except Exception as exc:  # the first error is the one to report
                    log.warning("MLflow run %s could not be marked failed (%s)",
                                active.info.run_id, _root_cause(exc))
            raise
        with sigterm_held():
            mlflow.end_run()

    @_held
    def log_params(self, params: Mapping[str, object]) -> None:
        """Log flat params (values stringified by MLflow)."""
        mlflow.log_params({k: v for k, v in params.items() if v is not None})

    @_held
    def log_metrics(self, metrics: Mapping[str, float], prefix: str = "") -> None:
        """Log finite metrics; NaN (undefined, e.g. one class only) is left out."""
        finite = {prefix + k: float(v) for k, v in metrics.items()
                  if v is not None and pd.notna(v)}
        mlflow.log_metrics(finite)

    @_held
    def log_dict(self, data: object, name: str) -> None:
        """Log a JSON or YAML artifact (by extension)."""
        mlflow.log_dict(data, name)

    @_held
    def log_text(self, text: str, name: str) -> None:
        """Log text (a rendered report, say) as an artifact file."""
        mlflow.log_text(text, name)

    @_held
    def log_table(self, frame: pd.DataFrame, name: str, caption: str | None = None) -> None:
        """Log a table as CSV and HTML artifacts, readable in the UI.

        ``caption`` heads the HTML table: what it measured, over which period (a bare
        table of metrics left a reviewer to guess the window).
        """
        with tempfile.TemporaryDirectory() as tmp:
            frame.to_csv(Path(tmp) / f"{name}.csv")
            html = frame.to_html(float_format=lambda v: f"{v:.4f}")
            if caption is not None:
                html = f"<p>{escape(caption)}</p>\n{html}"
            (Path(tmp) / f"{name}.html").write_text(html, encoding="utf-8")
            mlflow.log_artifacts(tmp)

    @_held
    def set_description(self, markdown: str) -> None:
        """The run's description, shown at the top of the run page in the MLflow UI."""
        mlflow.set_tag("mlflow.note.content", markdown)

    @_held
    def log_figure(self, figure: object, name: str) -> None:
        """Log a matplotlib figure as a PNG artifact."""
        mlflow.log_figure(figure, name)

    @_held
    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        """Log a local file."""
        mlflow.log_artifact(str(path), folder)

    @_held
    def log_bundle(self, bundle: object, example: pd.DataFrame, tags: Mapping[str, str]) -> str:
        """Log the bundle as a pyfunc model, register it, return the new version.

        Parameters
        ----------
        bundle : KeyLTVModel
            Fitted predictor.
        example : pandas.DataFrame
            A few feature rows with ``customer_id`` as a column: the input example, and
            with the bundle's outputs, the signature.
        tags : mapping
            Model-version tags (champion name, metric, data fingerprint...).
        """
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / BUNDLE_ARTIFACT
            with open(path, "wb") as handle:
                cloudpickle.dump(bundle, handle)
            example = plain_types(example)
            output = bundle_outputs(bundle, example)
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=KeyLTVPyfunc(),
                artifacts={"bundle": str(path)},
                signature=infer_signature(example, output),
                input_example=example,
                pip_requirements=requirements(),
                code_paths=[keyltv_source()],
            )
        version = mlflow.register_model(info.model_uri, self.model_name, tags=dict(tags))
        return str(version.version)

    def champion_version(self) -> object | None:
        """The model version behind ``@champion``, or None if there is none yet."""
        try:
            return self.client.get_model_version_by_alias(self.model_name, CHAMPION_ALIAS)
        except MlflowException:
            return None

    def model_versions(self) -> list:
        """Every registered version of the model, with its tags."""
        name = self.model_name.replace("'", "''")  # quoted in MLflow's filter syntax
        return list(self.client.search_model_versions(f"name = '{name}'"))

    @_held
    def set_champion(self, version: str) -> None:
        """Point ``@champion`` at ``version``."""
        self.client.set_registered_model_alias(self.model_name, CHAMPION_ALIAS, version)

    @_held
    def describe_version(self, version: str, markdown: str) -> None:
        """The model version's description, shown on its page in the registry."""
        self.client.update_model_version(self.model_name, version, description=markdown)

    @_held
    def mark_superseded(self, old: object, version: str) -> None:
        """Say on an earlier champion's version page and run page that it lost the alias.

        Their descriptions were written when it took ``@champion`` ("now @champion") and
        would otherwise keep saying so.
        """
        note = f"\n\n**Superseded:** version {version} took @champion."
        self.client.update_model_version(self.model_name, old.version,
                                         description=(old.description or "") + note)
        self.client.set_model_version_tag(self.model_name, old.version, "superseded_by",
                                          str(version))
        if old.run_id:
            text = self.client.get_run(old.run_id).data.tags.get("mlflow.note.content", "")
            self.client.set_tag(old.run_id, "mlflow.note.content", text + note)

    @_held
    def set_version_tag(self, version: str, key: str, value: str) -> None:
        """Annotate a model version (e.g. why it did not become champion)."""
        self.client.set_model_version_tag(self.model_name, version, key, value)


def connect(uri: str, experiment: str, model_name: str, artifact_root: Path | None = None) -> Store:
    """Point MLflow at ``uri`` and make sure the experiment exists.

    Remote servers are asked once, with no retries and a short timeout, so that an
    unreachable server fails the job in seconds instead of hanging a night.

    Raises
    ------
    InputError
        If the store cannot be reached or opened.
    StoreError
        If it exists but another job holds it (a locked SQLite file).
    """
    if uri.startswith(("http://", "https://")):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        _check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        path = sqlite_file(uri)
        if path is not None and not path.exists():
            _create_sqlite_store(path)
        client = MlflowClient(uri)
        found = client.get_experiment_by_name(experiment)
        if found is not None:
            return Store(uri, found.experiment_id, model_name)
        location = None
        if artifact_root is not None and uri.startswith("sqlite:"):
            location = Path(artifact_root).resolve().as_uri()
        try:
            created = client.create_experiment(experiment, artifact_location=location)
        except MlflowException as exc:
            # Another job starting on the same new store created it first: use theirs.
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            found = client.get_experiment_by_name(experiment)
            if found is None:
                raise
            created = found.experiment_id
        return Store(uri, created, model_name)
    except ImportError as exc:  # a database URI whose driver is not installed
        raise InputError(f"MLflow tracking store {redact_uri(uri)!r}: needs the Python module "
                         f"{exc.name!r}, which keyltv does not install; install it into the "
                         "environment, or use a sqlite:/// or http(s):// URI") from None
    except Exception as exc:  # MLflow's, SQLAlchemy's or the OS's, whatever the backend
        cause = _root_cause(exc)
        if any(word in cause.lower() for word in _BUSY):
            # The store is there but another job holds it: retry later, not a bad input.
            raise StoreError(f"MLflow tracking store {redact_uri(uri)!r}: cannot be used now "
                             f"({cause})") from exc
        raise InputError(f"MLflow tracking store {redact_uri(uri)!r}: cannot be reached "
                         f"({headline(exc)})") from None


def _create_sqlite_store(path: Path) -> None:
    """Create a new SQLite store's tables in a file of its own, then link it into place.

    MLflow creates the tables of a new store in some twenty migrations over a few
    seconds. A job stopped among them (SIGTERM) left a store that no later job could
    open ("table trace_info already exists", and ``mlflow db upgrade`` failed too), and
    two jobs starting on a new project folder ran the migrations together, one of them
    failing with an SQL error (audit 28). The tables are therefore made in a hidden
    temporary file beside ``path``, which is removed whatever happens; the finished file
    is hard-linked to ``path``, which fails if another job linked its own first (theirs
    is then used: both are new stores).
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        MlflowClient(f"sqlite:///{temporary.resolve()}").search_experiments(max_results=1)
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
    finally:
        for leftover in (temporary, temporary.with_name(temporary.name + "-journal")):
            leftover.unlink(missing_ok=True)


# Root causes of a store that exists but cannot be written at the moment.
_BUSY = ("database is locked", "readonly database", "read-only", "database is busy")


def _check_reachable(uri: str) -> None:
    """Open (and close) a TCP connection to a tracking server, failing in seconds.

    Raises
    ------
    InputError
        If the host does not resolve or refuses or drops the connection.
    """
    parts = urlsplit(uri)
    if parts.scheme in getproxies() and not proxy_bypass(parts.hostname or ""):
        return  # reached through a proxy: MLflow's own timeout applies
    port = parts.port or (443 if parts.scheme == "https" else 80)
    timeout = float(os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", "10"))
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise InputError(f"MLflow tracking store {redact_uri(uri)!r}: cannot be reached "
                         f"({reason}); check MLFLOW_TRACKING_URI or tracking.uri") from None


class StoreError(RuntimeError):
    """The tracking store exists but cannot be written (exit code 1, one line)."""


def _root_cause(exc: BaseException) -> str:
    """First line of the innermost cause: ``database is locked``, not MLflow's wrapper."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    text = str(exc).strip().splitlines()
    return redact_text(text[0][:200] if text else exc.__class__.__name__)


def config_json(config: object) -> str:
    """Stable JSON of a pydantic config, for params and artifacts."""
    return json.dumps(config.model_dump(mode="json"), sort_keys=True)
