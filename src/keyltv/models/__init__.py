"""Value models with the scikit-learn estimator contract.

Every model is fitted on a per-account feature frame (see :mod:`keyltv.features`) and
predicts value over ``horizon_days``:

- ``trailing``: naive baseline, value of the last horizon repeats.
- ``bgnbd`` / ``mbgnbd`` / ``pareto``: BG/NBD, MBG/NBD or Pareto/NBD with Gamma-Gamma
  spend (lifetimes). The peers ``bgnbd`` and ``pareto`` learn spend from repeat orders,
  as lifetimes does; keyltv's ``mbgnbd`` from every order, the first one too.
- ``lightgbm``: LightGBM (Tweedie) on stacked per-account features.
- ``hybrid``: the same GBM with the probabilistic model's outputs as inputs.

:class:`BlendedLTV` combines fitted models with non-negative weights fitted on a
backtest holdout (``keyltv.models.blend``); it is offered as the ``blend`` champion.
"""

from keyltv.config import MODEL_NAMES
from keyltv.models.baseline import TrailingValueRegressor
from keyltv.models.blend import BlendedLTV
from keyltv.models.events import GBMClassifier
from keyltv.models.gbm import GBMRegressor
from keyltv.models.hybrid import HybridRegressor
from keyltv.models.probabilistic import ProbabilisticLTV

__all__ = [
    "MODEL_NAMES",
    "BlendedLTV",
    "GBMClassifier",
    "GBMRegressor",
    "HybridRegressor",
    "ProbabilisticLTV",
    "TrailingValueRegressor",
]
