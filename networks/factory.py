"""Builds the policy, prior and critic for a task from sizes and information sets."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf

from networks import information
from networks.critic import Critic
from networks.gaussian import GaussianHead


@dataclasses.dataclass
class Networks:
    """The three networks the learner trains. Variables exist after `create_variables`."""

    policy: GaussianHead
    prior: GaussianHead
    critic: Critic

    def create_variables(self, observation_spec: Mapping) -> None:
        dummy = {
            key: tf.zeros((1,) + tuple(spec.shape), tf.float32)
            for key, spec in observation_spec.items()
        }
        self.policy(dummy)
        self.prior(dummy)
        self.critic(dummy, tf.zeros((1, self.policy.action_size), tf.float32))


def make_networks(
    observation_spec: Mapping,
    action_size: int,
    prior_keys: Sequence[str],
    policy_hidden: Sequence[int] = (256, 256),
    prior_hidden: Sequence[int] = (256, 256),
    critic_hidden: Sequence[int] = (256, 256),
    min_scale: float = 1e-3,
    init_scale: float = 0.7,
) -> Networks:
    """Policy and critic see every observation key; the prior sees only `prior_keys`."""
    all_keys = tuple(sorted(observation_spec))
    information.input_size(observation_spec, prior_keys)  # validates the keys
    networks = Networks(
        policy=GaussianHead(all_keys, action_size, policy_hidden, min_scale, init_scale, "policy"),
        prior=GaussianHead(prior_keys, action_size, prior_hidden, min_scale, init_scale, "prior"),
        critic=Critic(all_keys, critic_hidden, "critic"),
    )
    networks.create_variables(observation_spec)
    return networks


def observation_arrays(observation_spec: Mapping) -> dict[str, np.ndarray]:
    """Zero observation with a batch axis, for tests and warm-up."""
    return {k: np.zeros((1,) + tuple(s.shape), np.float32) for k, s in observation_spec.items()}
