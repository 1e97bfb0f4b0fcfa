"""point_mass_right: the quick start (`make run`); the prior sees the position only.

The point mass starts at the left wall and is rewarded, every 0.1 s step of an 8 s episode,
for being far right (at most 80 per episode; an untrained policy earns ~10 by staying
near the wall). The best behaviour, push right, does not depend on the velocity, so the
prior, which sees the position only, can learn it too: both the policy's and the prior's
evaluation returns rise within minutes on 2 cores (docs/results.md).

Variants (after a colon): `bprl run --config=experiments/configs/point_mass_right.py:local_short`
  (none)       32 actors, 1M actor steps.
  local_short  `make run`: 2 actors, 64-unit networks, ~5 minutes on 2 cores.
  tiny         smoke tests: tiny networks, a few thousand steps.
"""

from __future__ import annotations

import ml_collections

from bprl.experiments.configs.base import apply_tiny, base_config, unknown_variant


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = base_config()
    config.task = "point_mass_right"
    config.task_kwargs.n_sub_steps = 5  # 0.1 s per action: 80-step episodes
    config.prior_info = ("position",)
    # The sizes and rates of tests/test_agent_learning.py, where this task learns in a
    # few thousand steps.
    config.network.policy_hidden = (64, 64)
    config.network.prior_hidden = (64, 64)
    config.network.critic_hidden = (64, 64)
    config.network.min_scale = 0.1
    config.agent.num_action_samples = 4
    config.agent.policy_learning_rate = 3e-4
    config.agent.critic_learning_rate = 1e-3
    config.agent.prior_learning_rate = 3e-4
    config.agent.discount = 0.95
    config.replay.batch_size = 64
    config.replay.min_size = 100
    config.evaluators.episodes = 5
    config.evaluators.every_actor_steps = 10_000
    config.stop.max_actor_steps = 1_000_000
    if variant == "local_short":
        config.actors.num_actors = 2
        config.actors.variable_update_period = 200
        # ~0.2 updates per actor step (one 10-step sequence per 10 steps, batch 64)
        config.replay.samples_per_insert = 128.0
        config.evaluators.every_actor_steps = 2_000
        config.stop.max_actor_steps = 20_000
    elif variant == "tiny":
        apply_tiny(config, every_actor_steps=1_000, max_actor_steps=3_000)
        config.evaluators.episodes = 1
    elif variant:
        raise unknown_variant(variant)
    return config
