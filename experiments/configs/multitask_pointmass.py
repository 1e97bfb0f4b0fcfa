"""Multi-task point-mass navigation (the DISTRAL setting); the prior never sees `task_id`.

The task (`multitask_pointmass`, docs/tasks.md): the point-mass room with 4 fixed targets;
each episode draws the goal `task_id` uniformly, and every step spent within 0.1 m of the
goal pays +1 (200-step episodes). The policy sees its velocity (`proprioception`), its
position (`location`), the target positions (`targets`) and the one-hot task identity
(`task_id`).

The prior sees `proprioception`, `location` and `targets`, never `task_id`: that is the
DISTRAL case where the prior's information x^D is everything but the goal x^G. It can
learn what is shared across tasks (move to one of the targets and stop there) but must
average over which one, so the policy alone carries the task-specific part.

Variants (after a colon): `bprl run --config=experiments/configs/multitask_pointmass.py:local_short`
  (none)       the full setting: 32 actors, 10M actor steps.
  local_short  a short run on 2 cores: 3 actors, small networks, 200k actor steps.
  fixed_config the talk's "fixed configuration" question on the point mass: every episode
               starts at the centre (only the goal changes), 50 ms control steps, 100-step
               episodes, tanh actions, 3 actors, 400k actor steps. Run it once with the
               flat prior and once with `--config.prior.kind=hierarchical`, then compare
               the priors' action distributions at the start (experiments/prior_modes.py).
               `--config.prior.kind=mlp_latent_policy` is the flat prior under the
               hierarchical kind's policy (the same policy architecture in both arms).
  tiny         smoke tests: 2 actors, tiny networks, 100-step episodes, 1,500 actor steps.
"""

from __future__ import annotations

import ml_collections

from bprl.experiments.configs.base import (
    apply_pointmass_room_local,
    apply_tiny,
    base_config,
    unknown_variant,
)


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = base_config()
    config.task = "multitask_pointmass"
    config.prior_info = ("proprioception", "location", "targets")
    # As for seqnav_pointmass: what made the small point-mass tasks learn.
    config.network.min_scale = 0.1
    config.agent.policy_learning_rate = 1e-3
    config.agent.critic_learning_rate = 1e-3
    config.agent.prior_learning_rate = 3e-4
    if variant == "local_short":
        config.actors.num_actors = 3
        config.network.policy_hidden = (128, 128)
        config.network.prior_hidden = (128, 128)
        config.network.critic_hidden = (128, 128)
        config.network.init_scale = 1.0  # wider initial exploration: random play is sparse
        config.agent.num_action_samples = 4
        config.replay.batch_size = 64
        config.replay.min_size = 500
        config.replay.max_size = 100_000
        config.replay.samples_per_insert = 32.0
        config.evaluators.episodes = 3
        config.evaluators.every_actor_steps = 10_000
        config.stop.max_actor_steps = 200_000
    elif variant == "fixed_config":
        config.task_kwargs.fixed_start = True
        config.task_kwargs.control_timestep = 0.05
        config.task_kwargs.episode_length = 100
        # As seqnav_pointmass (tanh actions) and its local_short sizes.
        config.agent.action_squash = "tanh"
        config.network.mean_bound = 3.0
        apply_pointmass_room_local(config)
        config.evaluators.episodes = 4
        config.evaluators.every_actor_steps = 20_000
        config.stop.max_actor_steps = 400_000
    elif variant == "tiny":
        config.task_kwargs.episode_length = 100  # short episodes, so every actor logs soon
        apply_tiny(config, every_actor_steps=500, max_actor_steps=1_500)
    elif variant:
        raise unknown_variant(variant, ("", "local_short", "fixed_config", "tiny"))
    return config
