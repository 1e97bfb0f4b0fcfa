"""Builds the policy, prior and critic for a task from sizes and information sets."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf

from networks import information
from networks.critic import Critic
from networks.gaussian import GaussianHead
from networks.hierarchical import HierarchicalHead, make_hierarchical_pair
from networks.recurrent import RecurrentGaussianHead

PRIOR_KINDS = ("mlp", "lstm", "hierarchical")


@dataclasses.dataclass
class Networks:
    """The three networks the learner trains. Variables exist after `create_variables`.

    `kind` is the prior's architecture: "mlp" (GaussianHead policy and prior), "lstm"
    (GaussianHead policy, RecurrentGaussianHead prior) or "hierarchical" (HierarchicalHead
    policy and prior).
    """

    policy: GaussianHead | HierarchicalHead
    prior: GaussianHead | RecurrentGaussianHead | HierarchicalHead
    critic: Critic
    kind: str = "mlp"

    def create_variables(self, observation_spec: Mapping) -> None:
        dummy = {
            key: tf.zeros((1,) + tuple(spec.shape), tf.float32)
            for key, spec in observation_spec.items()
        }
        self.policy.create_variables(dummy)
        self.prior.create_variables(dummy)
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
    max_scale: float = 0.0,
    mean_bound: float = 1.0,
    prior_kind: str = "mlp",
    lstm_size: int = 128,
    latent_size: int = 4,
    low_hidden: Sequence[int] = (128, 128),
    share_low_level: bool = True,
) -> Networks:
    """Policy and critic see every observation key; the prior sees only `prior_keys`.

    `mean_bound` bounds the action heads' means (1: the unit box; larger for policies
    squashed by tanh after sampling). `prior_kind` picks the prior's architecture
    (`PRIOR_KINDS`); `lstm_size` is the LSTM prior's memory, `latent_size`, `low_hidden`
    and `share_low_level` shape the hierarchical policy and prior (the low level sees the
    prior's keys and z).
    """
    all_keys = tuple(sorted(observation_spec))
    information.input_size(observation_spec, prior_keys)  # validates the keys

    def scales(name: str) -> tuple:
        return (min_scale, init_scale, name, max_scale, mean_bound)

    if prior_kind == "mlp":
        policy = GaussianHead(all_keys, action_size, policy_hidden, *scales("policy"))
        prior = GaussianHead(prior_keys, action_size, prior_hidden, *scales("prior"))
    elif prior_kind == "lstm":
        policy = GaussianHead(all_keys, action_size, policy_hidden, *scales("policy"))
        prior = RecurrentGaussianHead(
            prior_keys, action_size, prior_hidden, lstm_size, *scales("prior")
        )
    elif prior_kind == "hierarchical":
        policy, prior = make_hierarchical_pair(
            all_keys,
            prior_keys,
            action_size,
            latent_size,
            policy_hidden,
            prior_hidden,
            low_hidden,
            share_low_level,
            min_scale,
            init_scale,
            max_scale,
            mean_bound,
        )
    else:
        raise ValueError(f"unknown prior kind {prior_kind!r}; use one of {PRIOR_KINDS}")
    networks = Networks(policy, prior, Critic(all_keys, critic_hidden, "critic"), prior_kind)
    networks.create_variables(observation_spec)
    return networks


def observation_arrays(observation_spec: Mapping) -> dict[str, np.ndarray]:
    """Zero observation with a batch axis, for tests and warm-up."""
    return {k: np.zeros((1,) + tuple(s.shape), np.float32) for k, s in observation_spec.items()}
