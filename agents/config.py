"""Hyperparameters of the learning rule: the one typed source of `config.agent`.

`launch/config/defaults.py` builds the config's `agent` section from these defaults, so
an experiment config only overrides them, and `LearnerHyperparams(**config.agent)` gives
the learner exactly the config's values (an unknown field is a TypeError).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class LearnerHyperparams:
    """Hyperparameters of SVG(0) + Retrace with a KL-regularised prior.

    Attributes:
      alpha: weight of KL(pi || pi0) in the reward and in the policy loss.
      discount: gamma.
      retrace_lambda: lambda in the trace coefficients c = lambda * min(1, pi'/mu).
      num_action_samples: S, samples of a ~ pi' for the soft value and of eps for SVG(0).
      policy_learning_rate, critic_learning_rate, prior_learning_rate: three Adam optimisers.
      target_update_period: learner steps between hard copies to the target networks.
      max_bad_updates: consecutive non-finite updates tolerated before the learner raises.
      action_squash: how a Gaussian sample u becomes the executed action: "clip" (clip to
        [-1, 1], as Acme's agent) or "tanh" (tanh(u): the SVG(0) gradient never vanishes
        outside the box). Replay stores u; the critic always sees the executed action.
    """

    alpha: float = 0.01
    discount: float = 0.99
    retrace_lambda: float = 1.0
    num_action_samples: int = 10
    policy_learning_rate: float = 1e-4
    critic_learning_rate: float = 1e-4
    prior_learning_rate: float = 1e-4
    target_update_period: int = 100
    max_bad_updates: int = 100
    action_squash: str = "clip"
