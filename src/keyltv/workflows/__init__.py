"""The jobs behind the CLI: train, score and demo, each one function.

They wire the packages together in data-flow order (load -> features -> models ->
evaluation -> tracking -> scoring) and hold no modelling logic of their own.

One module per job: :mod:`keyltv.workflows.train_job` (backtest, refit, register),
:mod:`keyltv.workflows.guards` (whether a log can be trained or judged on),
:mod:`keyltv.workflows.gate` (whether a new model takes ``@champion``),
:mod:`keyltv.workflows.score_job` (score, record, write the files),
:mod:`keyltv.workflows.evaluate_job` (rolling-origin evaluation) and
:mod:`keyltv.workflows.store` (the tracking store the jobs write to).
"""

from keyltv.inputs import feature_table, load_inputs
from keyltv.workflows.evaluate_job import evaluate, evaluation_json
from keyltv.workflows.guards import check_trainable
from keyltv.workflows.score_job import flag_counts, publish_scores, score, score_bundle, top_accounts
from keyltv.workflows.store import open_store
from keyltv.workflows.train_job import fit_bundle, flag_threshold_summary, train

__all__ = [
    "check_trainable",
    "evaluate",
    "evaluation_json",
    "feature_table",
    "fit_bundle",
    "flag_counts",
    "flag_threshold_summary",
    "load_inputs",
    "open_store",
    "publish_scores",
    "score",
    "score_bundle",
    "top_accounts",
    "train",
]
