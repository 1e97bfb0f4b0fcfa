"""walker-walk with a prior that sees proprioception only (joint orientations and height).

Variants (after a colon): `bprl run --config=experiments/configs/walker_walk.py:local_short`
  (none)       the full setting: 32 actors, 10M actor steps.
  local_short  a few minutes on 2 cores: 3 actors, small batch, 60k actor steps.
  tiny         smoke tests: 2 actors, tiny networks, a few thousand steps.
"""

from __future__ import annotations

import ml_collections

from experiments.configs.base import base_config


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = base_config()
    config.task = "walker_walk"
    config.prior_info = ("proprioception",)
    if variant == "local_short":
        config.actors.num_actors = 3
        config.network.policy_hidden = (128, 128)
        config.network.prior_hidden = (128, 128)
        config.network.critic_hidden = (128, 128)
        config.replay.batch_size = 64
        config.replay.min_size = 200
        config.replay.samples_per_insert = 16.0
        config.evaluators.every_actor_steps = 10_000
        config.stop.max_actor_steps = 60_000
    elif variant == "tiny":
        config.task_kwargs.time_limit = 5.0  # 200-step episodes, so every actor logs soon
        config.actors.num_actors = 2
        config.network.policy_hidden = (32,)
        config.network.prior_hidden = (32,)
        config.network.critic_hidden = (32,)
        config.agent.num_action_samples = 2
        config.replay.batch_size = 16
        config.replay.min_size = 20
        config.replay.samples_per_insert = 8.0
        config.evaluators.every_actor_steps = 1_000
        config.stop.max_actor_steps = 4_000
        config.logging.learner_every_steps = 10
    elif variant:
        raise ValueError(f"unknown variant {variant!r}; use '', 'local_short' or 'tiny'")
    return config
