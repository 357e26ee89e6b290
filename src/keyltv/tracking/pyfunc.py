"""The pyfunc face of a keyltv model: what is logged with it, and how it is loaded.

A registered version holds the fitted bundle (a cloudpickle), the pinned requirements
and keyltv's own source, so that it loads in an environment without keyltv. Loading
accepts only the configured store's registry and runs, or a local folder, and resolves
an alias to a version number once.
"""

from __future__ import annotations

import pickle
import sys
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit

import cloudpickle
import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from keyltv.data.schema import InputError, redact_text

BUNDLE_ARTIFACT = "bundle.pkl"

# Packages a fresh environment needs to load the pyfunc model (pinned as installed);
# keyltv itself travels with the model as source (see keyltv_source).
_RUNTIME_PACKAGES = ("pandas", "numpy", "scipy", "scikit-learn", "lightgbm", "lifetimes",
                     "autograd", "duckdb", "pyarrow", "cloudpickle", "pydantic", "pyyaml")


class KeyLTVPyfunc(mlflow.pyfunc.PythonModel):
    """Pyfunc face of :class:`keyltv.models.bundle.KeyLTVModel`.

    Input: one row per account, ``customer_id`` plus the feature columns. Output: the
    same ``customer_id`` with every model output column.
    """

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        """Unpickle the bundle logged beside the model."""
        with open(context.artifacts["bundle"], "rb") as handle:
            self.bundle = cloudpickle.load(handle)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """Model outputs per account."""
        return bundle_outputs(self.bundle, model_input)


def bundle_outputs(bundle: object, model_input: pd.DataFrame) -> pd.DataFrame:
    """Run the bundle on a flat frame (``customer_id`` as a column), as pyfunc does."""
    frame = model_input.set_index("customer_id")
    frame.index = frame.index.astype(str)
    return bundle.predict(frame).reset_index()


def plain_types(frame: pd.DataFrame) -> pd.DataFrame:
    """Categoricals as strings: MLflow schemas have no categorical type."""
    out = frame.copy()
    for column in out.columns:
        if isinstance(out[column].dtype, pd.CategoricalDtype) or out[column].dtype == object:
            out[column] = out[column].astype(str)
    return out


def keyltv_source() -> str:
    """The folder of the running keyltv package, logged with every model as its code.

    The bundle is a pickle of keyltv's classes, which unpickle only where keyltv can be
    imported. keyltv is not on a package index, so no pip requirement can name it: with
    its source beside the model (``code/keyltv``, which MLflow puts on ``sys.path`` when
    it loads the model), ``mlflow models serve`` or ``mlflow.pyfunc.load_model`` works in
    any environment with the pinned requirements, and runs the code the model was
    trained with. About 0.5 MB; MLflow leaves out ``__pycache__``.
    """
    return str(Path(__file__).resolve().parents[1])


def requirements() -> list[str]:
    """Exact pins of what the model needs, read from this environment."""
    pins = [f"mlflow=={metadata.version('mlflow')}"]
    for name in _RUNTIME_PACKAGES:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return pins


def headline(exc: Exception) -> str:
    """First line of an error, with any ``user:password@`` masked."""
    text = str(exc).strip().splitlines()
    head = text[0][:200] if text else exc.__class__.__name__
    return redact_text(head)


def load_bundle(model_uri: str) -> tuple[object, dict[str, str]]:
    """Load the bundle behind a model URI (``models:/keyltv@champion``, ``runs:/...``).

    Returns
    -------
    bundle : KeyLTVModel
    info : dict
        ``model_uri`` and, for registry URIs, ``model_version``.

    Raises
    ------
    InputError
        If the URI does not resolve to a keyltv model.
    """
    _check_model_uri(model_uri)
    try:
        # An alias or "latest" is resolved to a number once, and that version is loaded:
        # resolving it again to name the scores let a training that moved @champion in
        # between label one version's scores with another's number.
        version = _version_of(model_uri)
        pinned = f"models:/{version}" if model_uri.lower().startswith("models:/") else model_uri
        model = _load_pyfunc(pinned)
        python_model = model.unwrap_python_model()
    except (MlflowException, OSError) as exc:
        hint = ("; train one first, or point MLFLOW_TRACKING_URI or --project-dir at the store "
                "that has it") if "not found" in str(exc).lower() else ""
        raise InputError(
            f"model {model_uri!r}: cannot be loaded ({headline(exc)}){hint}") from None
    except (pickle.UnpicklingError, EOFError, ImportError, AttributeError) as exc:
        raise InputError(f"model {model_uri!r}: cannot be loaded (damaged or written by another "
                         f"keyltv version: {headline(exc)})") from None
    if not isinstance(python_model, KeyLTVPyfunc):
        raise InputError(f"model {model_uri!r}: is not a keyltv model")
    info = {"model_uri": model_uri, "model_version": version}
    return python_model.bundle, info


def _load_pyfunc(model_uri: str) -> mlflow.pyfunc.PyFuncModel:
    """``mlflow.pyfunc.load_model`` that leaves ``sys.path`` as it was.

    MLflow prepends the model's ``code`` folder (a copy of keyltv, see
    :func:`keyltv_source`) to ``sys.path`` and leaves it there. In this process keyltv
    is already imported, so its modules keep coming from the installed package (a
    submodule is looked up in its package's folder, not on ``sys.path``); the entry is
    removed so that nothing imported later in a long-lived process can come from the
    model's copy.
    """
    before = list(sys.path)
    try:
        return mlflow.pyfunc.load_model(model_uri)
    finally:
        sys.path[:] = before


def _check_model_uri(model_uri: str) -> None:
    """Allow only the configured store's registry and runs, or a local model folder.

    A model is a pickle, and unpickling runs code: keyltv never fetches one from a
    place the configuration or the user did not name.

    Raises
    ------
    InputError
        For any other scheme (``http``, ``s3``, ...) or a registry URI with a host.
    """
    parts = urlsplit(model_uri)
    scheme = parts.scheme.lower()
    if scheme in ("models", "runs"):
        if parts.netloc:
            raise InputError(f"model {model_uri!r}: a {scheme}:// URI names another registry; "
                             f"use {scheme}:/... to load from the configured tracking store")
        return
    if scheme in ("", "file") or len(scheme) == 1:  # a path (one letter: a Windows drive)
        folder = Path(parts.path if scheme == "file" else model_uri)
        if not folder.is_dir():
            raise InputError(f"model {model_uri!r}: no such model folder")
        return
    raise InputError(f"model {model_uri!r}: scheme {scheme!r} is not allowed; use "
                     "models:/NAME@ALIAS or models:/NAME/VERSION, runs:/RUN_ID/model, or a "
                     "local model folder")


def _version_of(model_uri: str) -> str:
    """``NAME/N`` behind a ``models:/NAME@ALIAS``, ``models:/NAME/latest`` or ``models:/NAME/N``.

    Other URIs (``runs:/``, a folder) are returned as they are.
    """
    if not model_uri.lower().startswith("models:/"):
        return model_uri
    ref = model_uri[len("models:/"):]
    client = MlflowClient()
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return f"{name}/{client.get_model_version_by_alias(name, alias).version}"
    name, _, number = ref.rpartition("/")
    if number.lower() == "latest":
        versions = client.search_model_versions(f"name = '{name.replace(chr(39), '')}'")
        if not versions:
            raise MlflowException(f"Registered model {name!r} not found")
        return f"{name}/{max(int(v.version) for v in versions)}"
    return ref
