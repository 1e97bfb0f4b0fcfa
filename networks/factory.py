"""The three networks the learner trains, as one object (built by `agents.prior_kinds`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from bprl.networks.critic import Critic
from bprl.networks.gaussian import GaussianHead
from bprl.networks.hierarchical import HierarchicalHead
from bprl.networks.mlp import Linear
from bprl.networks.recurrent import RecurrentGaussianHead


@dataclasses.dataclass
class Networks:
    """The three networks the learner trains. Variables exist after `create_variables`.

    `kind` is the prior's architecture, an `agents.prior_kinds.PriorKind` (it builds the
    heads, and says how the learner and actors use them).
    """

    policy: GaussianHead | HierarchicalHead
    prior: GaussianHead | RecurrentGaussianHead | HierarchicalHead
    critic: Critic
    kind: Any = None

    def create_variables(self, observation_spec: Mapping) -> None:
        dummy = {
            key: tf.zeros((1,) + tuple(spec.shape), tf.float32)
            for key, spec in observation_spec.items()
        }
        self.policy.create_variables(dummy)
        self.prior.create_variables(dummy)
        self.critic(dummy, tf.zeros((1, self.policy.action_size), tf.float32))

    def set_product_dtype(self, dtype: tf.DType) -> None:
        """Every dense layer's matrix product in `dtype` (the learner's bfloat16 kernels,
        `launch/config/xla.py`); variables and everything elementwise stay float32. (An LSTM
        prior's recurrent cell keeps its float32 products.)"""
        for net in (self.policy, self.prior, self.critic):
            for module in net.submodules:
                if isinstance(module, Linear):
                    module.product_dtype = dtype


def observation_arrays(observation_spec: Mapping) -> dict[str, np.ndarray]:
    """Zero observation with a batch axis, for tests and warm-up."""
    return {k: np.zeros((1,) + tuple(s.shape), np.float32) for k, s in observation_spec.items()}
