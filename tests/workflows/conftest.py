"""Shared by the workflow tests: a fast config (three models, two training cutoffs)."""

from keyltv.config import Config

CONFIG = Config(horizon_days=182, models=("trailing", "bgnbd", "lightgbm"),
                training={"n_cutoffs": 2})
