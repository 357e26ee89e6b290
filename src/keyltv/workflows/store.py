"""The tracking store the train and score jobs write to."""

from __future__ import annotations

import logging
from pathlib import Path

from keyltv.config import Config
from keyltv.data.schema import redact_uri
from keyltv.tracking.store import Store, check_store_exists, connect, resolve_tracking_uri

log = logging.getLogger("keyltv")


def open_store(config: Config, project_dir: Path | None = None, existing: bool = False) -> Store:
    """Connect to the tracking store (see :func:`keyltv.tracking.store.resolve_tracking_uri`).

    ``project_dir`` is an explicit ``--project-dir``: its store wins over the
    environment and the config. Artifacts go to ``mlartifacts`` in that folder (the
    working directory without it). With ``existing`` (a job that loads a registered
    model), a SQLite store that does not exist is refused instead of created.
    """
    uri = resolve_tracking_uri(config.tracking.uri, project_dir)
    if existing:
        check_store_exists(uri)
    folder = Path.cwd() if project_dir is None else Path(project_dir)
    log.info("MLflow store %s", redact_uri(uri))
    return connect(uri, config.tracking.experiment, config.tracking.model_name,
                   artifact_root=folder / "mlartifacts")
